//! Kept answers in IndexedDB, for the router's last resort ([`crate::router::cache`]): one
//! database beside the model store, an `answers` store of `chat.completion` texts and an `index`
//! store of their sizes and last use, which is all that is read at start.

use std::cell::RefCell;

use js_sys::Array;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::router::cache::Lru;

#[wasm_bindgen(inline_js = r#"
const done = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});
const committed = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve();
  tx.onerror = () => reject(tx.error);
  tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
});
export function answers_open() {
  const req = indexedDB.open('candlelight-answers', 1);
  req.onupgradeneeded = () => {
    for (const store of ['answers', 'index']) req.result.createObjectStore(store);
  };
  return done(req);
}
export async function answers_index(db) {
  const tx = db.transaction('index', 'readonly');
  const [keys, values] = await Promise.all([done(tx.objectStore('index').getAllKeys()), done(tx.objectStore('index').getAll())]);
  return keys.map((k, i) => [k, values[i].bytes, values[i].used]);
}
export function answers_get(db, key) {
  return done(db.transaction('answers', 'readonly').objectStore('answers').get(key));
}
export function answers_write(db, puts, deletes) {
  const tx = db.transaction(['answers', 'index'], 'readwrite');
  for (const [key, text, bytes, used] of puts) {
    if (text !== undefined) tx.objectStore('answers').put(text, key);
    tx.objectStore('index').put({ bytes, used }, key);
  }
  for (const key of deletes) {
    tx.objectStore('answers').delete(key);
    tx.objectStore('index').delete(key);
  }
  return committed(tx);
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn answers_open() -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn answers_index(db: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn answers_get(db: &JsValue, key: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn answers_write(db: &JsValue, puts: Array, deletes: Array) -> Result<JsValue, JsValue>;
}

pub struct AnswerStore {
    db: JsValue,
    lru: RefCell<Lru>,
}

fn now() -> f64 {
    js_sys::Date::now()
}

impl AnswerStore {
    /// Opens the store and reads its index; `cap` bytes at most are kept.
    pub async fn open(cap: u64) -> Result<AnswerStore, JsValue> {
        let db = answers_open().await?;
        let mut lru = Lru::new(cap);
        let index: Array = answers_index(&db).await?.into();
        for row in index.iter() {
            let row: Array = row.into();
            if let Some(key) = row.get(0).as_string() {
                lru.restore(
                    key,
                    row.get(1).as_f64().unwrap_or(0.0) as u64,
                    row.get(2).as_f64().unwrap_or(0.0),
                );
            }
        }
        let store = AnswerStore {
            db,
            lru: RefCell::new(lru),
        };
        // A cap lowered since the last start applies at once.
        let over = store.lru.borrow_mut().fit();
        if !over.is_empty() {
            answers_write(
                &store.db,
                Array::new(),
                over.iter().map(|k| JsValue::from_str(k)).collect(),
            )
            .await?;
        }
        Ok(store)
    }

    /// The answer kept under `key`, now the most recently used.
    pub async fn get(&self, key: &str) -> Option<Value> {
        if !self.lru.borrow().contains(key) {
            return None;
        }
        let text = answers_get(&self.db, key).await.ok()?.as_string()?;
        let t = now();
        self.lru.borrow_mut().touch(key, t);
        let row = Array::of4(
            &key.into(),
            &JsValue::UNDEFINED,
            &(text.len() as f64).into(),
            &t.into(),
        );
        let _ = answers_write(&self.db, Array::of1(&row), Array::new()).await;
        serde_json::from_str(&text).ok()
    }

    /// Keeps `answer` under `key`; returns how many older answers made room for it.
    pub async fn put(&self, key: &str, answer: &Value) -> Result<usize, JsValue> {
        let text = answer.to_string();
        let t = now();
        let evicted = self
            .lru
            .borrow_mut()
            .insert(key.to_string(), text.len() as u64, t);
        let stored = self.lru.borrow().contains(key);
        let bytes = text.len() as f64;
        let puts = if stored {
            Array::of1(&Array::of4(
                &key.into(),
                &text.into(),
                &bytes.into(),
                &t.into(),
            ))
        } else {
            Array::new()
        };
        answers_write(
            &self.db,
            puts,
            evicted.iter().map(|k| JsValue::from_str(k)).collect(),
        )
        .await?;
        Ok(evicted.iter().filter(|k| k.as_str() != key).count())
    }
}
