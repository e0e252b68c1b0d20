//! IndexedDB in the browser: one record per model file and one per chunk, each chunk stored as a
//! Blob with the SHA-256 and the XXH3 it was written with, and checked against its XXH3 on every
//! read. Chunk bytes stay in JavaScript memory; only the bytes a reader asks for are copied into
//! the wasm heap, so loading never holds the file twice.
//!
//! Plain web-sys plus a few lines of JavaScript that turn IndexedDB requests into promises: the
//! wrapper crates (rexie, indexed_db_futures) add an executor-agnostic layer and several
//! dependencies for four operations, and hide when a transaction commits, which matters here.

use js_sys::{Array, Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::idb_chunks::checked;
pub use super::idb_chunks::{BlobChunks, IdbChunks};
use super::StoreError;

#[wasm_bindgen(inline_js = r#"
export function open_db(name, version) {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name, version);
    req.onupgradeneeded = () => {
      const db = req.result;
      for (const store of ['files', 'chunks']) {
        if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
      }
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error('IndexedDB upgrade blocked by another tab'));
  });
}
export function request_done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
export function transaction_done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new DOMException('transaction aborted', 'AbortError'));
  });
}
export function read_checked(db, key) {
  // A chunk read (and, when stored without its XXH3, hashed) as one promise, which runs on while
  // the caller computes (the read-ahead of IdbChunks); failures resolve to { error }, so a
  // read-ahead nobody awaits never reports an unhandled rejection. Chunks are stored as Blobs
  // (older versions stored the bytes themselves); a Blob whose file the browser lost resolves to
  // { unreadable }.
  return new Promise((resolve, reject) => {
    const req = db.transaction('chunks', 'readonly').objectStore('chunks').get(key);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  }).then(async (value) => {
    let data = value?.data;
    if (data instanceof Blob) {
      try {
        data = new Uint8Array(await data.arrayBuffer());
      } catch (unreadable) {
        return { value, unreadable };
      }
    }
    if (!(data instanceof Uint8Array)) return { value };
    if (typeof value.xxh3 === 'string') return { value, data };
    return { value, data, actual: await subtle_sha256(data) };
  }).catch((error) => ({ error }));
}
export function chunk_metas(db, range) {
  // Every stored chunk's key and the geometry it was written with (not its bytes: a Blob handle).
  return new Promise((resolve, reject) => {
    const store = db.transaction('chunks', 'readonly').objectStore('chunks');
    const out = [];
    const req = store.openCursor(range);
    req.onsuccess = () => {
      const c = req.result;
      if (!c) return resolve(out);
      const v = c.value ?? {};
      out.push([c.key[1], v.len ?? -1, v.chunkSize ?? -1, v.generation ?? '']);
      c.continue();
    };
    req.onerror = () => reject(req.error);
  });
}
export function acquire_lock(name, signal) {
  // A Web Lock held until the returned function is called; null where there are none.
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks) return Promise.resolve(null);
  return new Promise((acquired, failed) => {
    locks.request(name, signal ? { signal } : {}, () => new Promise((release) => acquired(release))).catch(failed);
  });
}
export async function subtle_sha256(bytes) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) return undefined;
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    async fn open_db(name: &str, version: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn request_done(req: &web_sys::IdbRequest) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn transaction_done(tx: &web_sys::IdbTransaction) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn subtle_sha256(bytes: &Uint8Array) -> Result<JsValue, JsValue>;
    fn read_checked(db: &web_sys::IdbDatabase, key: &JsValue) -> js_sys::Promise;
    #[wasm_bindgen(catch)]
    async fn chunk_metas(db: &web_sys::IdbDatabase, range: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn acquire_lock(name: &str, signal: &JsValue) -> Result<JsValue, JsValue>;
}

/// Runs `work` holding the Web Lock `name` (`navigator.locks`), so tabs and workers of the
/// origin take turns; where there are no Web Locks it runs at once. An abort of `signal` while
/// waiting ends the wait.
pub async fn with_lock<T>(
    name: &str,
    signal: Option<&web_sys::AbortSignal>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, JsValue> {
    let signal = signal.map_or(JsValue::UNDEFINED, |s| s.clone().into());
    let release = acquire_lock(name, &signal).await?;
    let out = work.await;
    if let Some(release) = release.dyn_ref::<js_sys::Function>() {
        let _ = release.call0(&JsValue::NULL);
    }
    Ok(out)
}

const DB_NAME: &str = "candlelight";
const DB_VERSION: u32 = 1;
const FILES: &str = "files";
const CHUNKS: &str = "chunks";

/// What is known about one stored model file, keyed by its URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileRecord {
    pub url: String,
    pub size: u64,
    pub chunk_size: u64,
    pub etag: Option<String>,
    /// The whole file's SHA-256 when known (given, or from the server's ETag).
    pub sha256: Option<String>,
    /// Every chunk is stored.
    pub complete: bool,
    /// The whole file was hashed and matched `sha256`.
    pub verified: bool,
    pub stored_at_ms: f64,
    /// Names this download of the file: chunks written for another (another chunk size from
    /// another tab, a version the server has since replaced) are not this file's.
    pub generation: String,
}

impl FileRecord {
    /// The bytes chunk `index` holds.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let cs = self.chunk_size.max(1);
        self.size.saturating_sub(index * cs).min(cs)
    }
}

/// A fresh generation name.
pub fn new_generation() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes.copy_from_slice(&js_sys::Math::random().to_bits().to_le_bytes());
    }
    crate::hex::encode(&bytes)
}

pub(crate) fn js_error(e: JsValue) -> StoreError {
    if let Some(ex) = e.dyn_ref::<web_sys::DomException>() {
        if ex.name() == "QuotaExceededError" {
            return StoreError::Quota(ex.message());
        }
        return StoreError::Backend(format!("{}: {}", ex.name(), ex.message()));
    }
    StoreError::Backend(
        e.as_string()
            .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| e.message().into()))
            .unwrap_or_else(|| format!("{e:?}")),
    )
}

/// SHA-256 of bytes held by JavaScript, lower-case hex: SubtleCrypto where it exists (secure
/// contexts), else our own in 1 MiB pieces.
pub async fn sha256_hex(bytes: &Uint8Array) -> Result<String, StoreError> {
    if let Some(hex) = subtle_sha256(bytes).await.map_err(js_error)?.as_string() {
        return Ok(hex);
    }
    let mut hasher = Sha256::new();
    feed(&mut hasher, bytes);
    Ok(crate::hex::encode(&hasher.finalize()))
}

/// Adds JavaScript-held bytes to a hash through a small reused buffer.
pub fn feed(hasher: &mut Sha256, bytes: &Uint8Array) {
    in_pieces(bytes, |piece| hasher.update(piece));
}

/// JavaScript-held bytes handed to `f` in order, 1 MiB at a time, through one reused buffer.
fn in_pieces(bytes: &Uint8Array, mut f: impl FnMut(&[u8])) {
    const PIECE: u32 = 1 << 20;
    let mut buf = vec![0u8; PIECE.min(bytes.length()) as usize];
    let mut at = 0;
    while at < bytes.length() {
        let n = PIECE.min(bytes.length() - at);
        bytes.subarray(at, at + n).copy_to(&mut buf[..n as usize]);
        f(&buf[..n as usize]);
        at += n;
    }
}

/// A chunk's XXH3-64, 16 lower-case hex digits: stored with it beside its SHA-256, and what a load
/// checks it by. SubtleCrypto's SHA-256 of a 281 MB file took 295–330 ms in Chromium here (one
/// thread, whatever the parallelism) on top of 470–690 ms of IndexedDB reads, which it did not
/// overlap; XXH3 runs in this module's thread, which waits for those reads. A load checks
/// against storage damage, where 64 bits are as good as 256; a script that could rewrite a chunk
/// could rewrite its hash too, so SHA-256 at load never guarded against that. Downloads still
/// verify SHA-256.
pub fn xxh3_hex(bytes: &Uint8Array) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    in_pieces(bytes, |piece| hasher.update(piece));
    format!("{:016x}", hasher.digest())
}

fn chunk_key(url: &str, index: u64) -> JsValue {
    Array::of2(&JsValue::from_str(url), &JsValue::from_f64(index as f64)).into()
}

/// The model-file database.
#[derive(Clone)]
pub struct ModelDb {
    db: web_sys::IdbDatabase,
}

impl ModelDb {
    pub async fn open() -> Result<Self, StoreError> {
        let db = open_db(DB_NAME, DB_VERSION).await.map_err(js_error)?;
        Ok(Self {
            db: db.unchecked_into(),
        })
    }

    fn store(
        &self,
        name: &str,
        write: bool,
    ) -> Result<(web_sys::IdbTransaction, web_sys::IdbObjectStore), StoreError> {
        let mode = if write {
            web_sys::IdbTransactionMode::Readwrite
        } else {
            web_sys::IdbTransactionMode::Readonly
        };
        let tx = self
            .db
            .transaction_with_str_and_mode(name, mode)
            .map_err(js_error)?;
        let store = tx.object_store(name).map_err(js_error)?;
        Ok((tx, store))
    }

    pub async fn file(&self, url: &str) -> Result<Option<FileRecord>, StoreError> {
        let (_, store) = self.store(FILES, false)?;
        let value = request_done(&store.get(&url.into()).map_err(js_error)?)
            .await
            .map_err(js_error)?;
        if value.is_undefined() {
            return Ok(None);
        }
        serde_wasm_bindgen::from_value(value)
            .map(Some)
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    pub async fn put_file(&self, record: &FileRecord) -> Result<(), StoreError> {
        let value =
            serde_wasm_bindgen::to_value(record).map_err(|e| StoreError::Backend(e.to_string()))?;
        let (tx, store) = self.store(FILES, true)?;
        store
            .put_with_key(&value, &record.url.as_str().into())
            .map_err(js_error)?;
        transaction_done(&tx).await.map_err(js_error)?;
        Ok(())
    }

    /// Every stored model file.
    pub async fn files(&self) -> Result<Vec<FileRecord>, StoreError> {
        let (_, store) = self.store(FILES, false)?;
        let all = request_done(&store.get_all().map_err(js_error)?)
            .await
            .map_err(js_error)?;
        serde_wasm_bindgen::from_value(all).map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn chunk_range(url: &str) -> Result<JsValue, StoreError> {
        web_sys::IdbKeyRange::bound(&chunk_key(url, 0), &chunk_key(url, u64::MAX >> 11))
            .map(Into::into)
            .map_err(js_error)
    }

    /// Indices of the chunks of `url` that are stored.
    pub async fn chunk_indices(&self, url: &str) -> Result<Vec<u64>, StoreError> {
        let (_, store) = self.store(CHUNKS, false)?;
        let keys = store
            .get_all_keys_with_key(&Self::chunk_range(url)?)
            .map_err(js_error)?;
        let keys: Array = request_done(&keys)
            .await
            .map_err(js_error)?
            .unchecked_into();
        Ok(keys
            .iter()
            .filter_map(|k| Array::from(&k).get(1).as_f64())
            .map(|i| i as u64)
            .collect())
    }

    /// Stores chunk `index` of `url` with its SHA-256 and XXH3; the write is durable when this
    /// returns.
    pub async fn put_chunk(
        &self,
        url: &str,
        index: u64,
        bytes: &Uint8Array,
    ) -> Result<(), StoreError> {
        self.put_chunk_with(url, index, bytes, &Object::new()).await
    }

    /// Stores chunk `index` of `record`'s file with the geometry it was cut with (length, chunk
    /// size, generation), which every read checks.
    pub async fn put_record_chunk(
        &self,
        record: &FileRecord,
        index: u64,
        bytes: &Uint8Array,
    ) -> Result<(), StoreError> {
        let meta = Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&meta, &k.into(), &v).map_err(js_error);
        set("len", (bytes.length() as f64).into())?;
        set("chunkSize", (record.chunk_size as f64).into())?;
        set("generation", record.generation.as_str().into())?;
        self.put_chunk_with(&record.url, index, bytes, &meta).await
    }

    async fn put_chunk_with(
        &self,
        url: &str,
        index: u64,
        bytes: &Uint8Array,
        value: &Object,
    ) -> Result<(), StoreError> {
        let sha = sha256_hex(bytes).await?;
        let set = |k: &str, v: &JsValue| Reflect::set(value, &k.into(), v).map_err(js_error);
        set("sha256", &sha.as_str().into())?;
        set("xxh3", &xxh3_hex(bytes).into())?;
        // As a Blob: Chromium reads a 281 MB model stored as Blobs back in 200–250 ms here, and
        // as byte arrays in 430–520 ms (random bytes, any number of reads in flight).
        let blob =
            web_sys::Blob::new_with_u8_array_sequence(&Array::of1(bytes)).map_err(js_error)?;
        set("data", &blob)?;
        let (tx, store) = self.store(CHUNKS, true)?;
        store
            .put_with_key(value, &chunk_key(url, index))
            .map_err(js_error)?;
        transaction_done(&tx).await.map_err(js_error)?;
        Ok(())
    }

    /// Chunk `index` of `url`, checked against the hash stored with it.
    pub async fn read_chunk(&self, url: &str, index: u64) -> Result<Uint8Array, StoreError> {
        checked(self.start_read(url, index), index, None).await
    }

    /// Chunk `index` of `record`'s file, checked against its hash and against the record: a
    /// chunk of another generation or of the wrong length is damaged, never read back.
    pub async fn read_record_chunk(
        &self,
        record: &FileRecord,
        index: u64,
    ) -> Result<Uint8Array, StoreError> {
        checked(self.start_read(&record.url, index), index, Some(record)).await
    }

    /// Indices of the chunks of `record`'s file that belong to it: its generation, the length
    /// its chunk size gives (chunks from before chunks kept their geometry: length only).
    pub async fn record_chunks(&self, record: &FileRecord) -> Result<Vec<u64>, StoreError> {
        let metas: Array = chunk_metas(&self.db, &Self::chunk_range(&record.url)?)
            .await
            .map_err(js_error)?
            .unchecked_into();
        Ok(metas
            .iter()
            .filter_map(|m| {
                let m = Array::from(&m);
                let index = m.get(0).as_f64()? as u64;
                let len = m.get(1).as_f64().unwrap_or(-1.0);
                let generation = m.get(3).as_string().unwrap_or_default();
                let legacy = len < 0.0 && record.generation.is_empty();
                let fits = len == record.chunk_len(index) as f64
                    && m.get(2).as_f64() == Some(record.chunk_size as f64)
                    && generation == record.generation;
                (legacy || fits).then_some(index)
            })
            .collect())
    }

    /// Starts reading and hashing chunk `index`; `checked` finishes it.
    pub(super) fn start_read(&self, url: &str, index: u64) -> js_sys::Promise {
        read_checked(&self.db, &chunk_key(url, index))
    }

    pub async fn delete_chunk(&self, url: &str, index: u64) -> Result<(), StoreError> {
        let (tx, store) = self.store(CHUNKS, true)?;
        store.delete(&chunk_key(url, index)).map_err(js_error)?;
        transaction_done(&tx).await.map_err(js_error)?;
        Ok(())
    }

    /// Forgets `url`: its record and every chunk.
    pub async fn delete_file(&self, url: &str) -> Result<(), StoreError> {
        let tx = self
            .db
            .transaction_with_str_sequence_and_mode(
                &Array::of2(&FILES.into(), &CHUNKS.into()),
                web_sys::IdbTransactionMode::Readwrite,
            )
            .map_err(js_error)?;
        tx.object_store(FILES)
            .map_err(js_error)?
            .delete(&url.into())
            .map_err(js_error)?;
        tx.object_store(CHUNKS)
            .map_err(js_error)?
            .delete(&Self::chunk_range(url)?)
            .map_err(js_error)?;
        transaction_done(&tx).await.map_err(js_error)?;
        Ok(())
    }

    /// Drops every chunk of `url` (the file changed on the server).
    pub async fn clear_chunks(&self, url: &str) -> Result<(), StoreError> {
        let (tx, store) = self.store(CHUNKS, true)?;
        store.delete(&Self::chunk_range(url)?).map_err(js_error)?;
        transaction_done(&tx).await.map_err(js_error)?;
        Ok(())
    }
}
