//! A few IndexedDB operations as promises, for the small stores of the web layer (the answer
//! cache, conversations): open with object stores, get, get all, one transaction of puts and
//! deletes that resolves when it commits, and a read-decide-write of one key in one readwrite
//! transaction. The model store has its own (`store::indexed_db`), tuned for chunks.

use js_sys::Array;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
const done = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});
export function kv_open(name, stores) {
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => {
    for (const store of stores) req.result.createObjectStore(store);
  };
  return done(req);
}
export function kv_get(db, store, key) {
  return done(db.transaction(store, 'readonly').objectStore(store).get(key));
}
export async function kv_all(db, store) {
  const tx = db.transaction(store, 'readonly');
  const [keys, values] = await Promise.all([done(tx.objectStore(store).getAllKeys()), done(tx.objectStore(store).getAll())]);
  return keys.map((k, i) => [k, values[i]]);
}
export function kv_write(db, stores, ops) {
  const tx = db.transaction(stores, 'readwrite');
  for (const [store, key, value] of ops) {
    if (value === undefined) tx.objectStore(store).delete(key);
    else tx.objectStore(store).put(value, key);
  }
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}
// Reads a key and writes what `decide` makes of it, in one readwrite transaction: `decide` runs
// synchronously in the read's success handler, while the transaction is still active, so no
// other write to the store can come in between. It returns the value to put, undefined to
// delete, or null to leave the key alone; what it throws aborts the transaction and rejects.
export function kv_update(db, store, key, decide) {
  const tx = db.transaction(store, 'readwrite');
  const objects = tx.objectStore(store);
  let thrown;
  const read = objects.get(key);
  read.onsuccess = () => {
    try {
      const next = decide(read.result);
      if (next === undefined) objects.delete(key);
      else if (next !== null) objects.put(next, key);
    } catch (e) {
      thrown = e;
      tx.abort();
    }
  };
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(thrown ?? tx.error ?? new DOMException('transaction aborted', 'AbortError'));
  });
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn kv_open(name: &str, stores: Array) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn kv_get(db: &JsValue, store: &str, key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn kv_all(db: &JsValue, store: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn kv_write(db: &JsValue, stores: Array, ops: Array) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn kv_update(
        db: &JsValue,
        store: &str,
        key: &str,
        decide: &Closure<dyn FnMut(JsValue) -> Result<JsValue, JsValue>>,
    ) -> Result<JsValue, JsValue>;
}

/// What [`KeyValueDb::update`] does with the key it read.
pub enum Decision {
    Put(JsValue),
    Delete,
    Keep,
}

/// One database of string-keyed object stores.
pub struct KeyValueDb {
    db: JsValue,
    stores: Array,
}

/// A put (`Some` value) or a delete (`None`) in one store.
pub struct Write<'a>(pub &'a str, pub &'a str, pub Option<JsValue>);

impl KeyValueDb {
    pub async fn open(name: &str, stores: &[&str]) -> Result<KeyValueDb, JsValue> {
        let stores: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        Ok(KeyValueDb {
            db: kv_open(name, stores.clone()).await?,
            stores,
        })
    }

    /// The value under `key`; undefined when there is none.
    pub async fn get(&self, store: &str, key: &str) -> Result<JsValue, JsValue> {
        kv_get(&self.db, store, key).await
    }

    /// Every `(key, value)` of a store.
    pub async fn all(&self, store: &str) -> Result<Vec<(String, JsValue)>, JsValue> {
        let rows: Array = kv_all(&self.db, store).await?.into();
        Ok(rows
            .iter()
            .filter_map(|row| {
                let row: Array = row.into();
                Some((row.get(0).as_string()?, row.get(1)))
            })
            .collect())
    }

    /// The operations in one transaction over every store; resolves once it commits.
    pub async fn write(&self, ops: &[Write<'_>]) -> Result<(), JsValue> {
        let ops: Array = ops
            .iter()
            .map(|Write(store, key, value)| {
                JsValue::from(Array::of3(
                    &(*store).into(),
                    &(*key).into(),
                    value.as_ref().unwrap_or(&JsValue::UNDEFINED),
                ))
            })
            .collect();
        kv_write(&self.db, self.stores.clone(), ops)
            .await
            .map(|_| ())
    }

    /// Reads `key` and writes what `decide` makes of its value (undefined when there is none),
    /// in one readwrite transaction, so no other write to the store comes in between. An error
    /// from `decide` aborts the transaction (nothing is written) and is what this returns.
    pub async fn update(
        &self,
        store: &str,
        key: &str,
        mut decide: impl FnMut(JsValue) -> Result<Decision, JsValue> + 'static,
    ) -> Result<(), JsValue> {
        let decide: Closure<dyn FnMut(JsValue) -> Result<JsValue, JsValue>> =
            Closure::new(move |current| {
                Ok(match decide(current)? {
                    Decision::Put(value) => value,
                    Decision::Delete => JsValue::UNDEFINED,
                    Decision::Keep => JsValue::NULL,
                })
            });
        // The closure lives until the transaction settles, which is after its one call.
        kv_update(&self.db, store, key, &decide).await.map(|_| ())
    }
}
