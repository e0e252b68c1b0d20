//! Reading stored model files: chunks from IndexedDB checked as they are read (their hash, and
//! their geometry against the file's record), the last one cached and the next read ahead; and
//! a file the user picked, a slice at a time.

use std::cell::RefCell;

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use super::indexed_db::{js_error, sha256_hex, xxh3_hex, FileRecord, ModelDb};
use super::{ChunkStore, StoreError};

/// Chunks read ahead of the one asked for: their reads and hashes run while the model loader
/// works on the current one (reading and hashing a 16 MiB chunk takes about as long as loading
/// it), at the cost of this many chunks held in JavaScript memory.
const READ_AHEAD: u64 = 2;

/// A chunk read by `read_checked`, checked against its stored XXH3 (`xxh3_hex`), or for chunks
/// stored before that existed its SHA-256 (hashed here where the page has no SubtleCrypto).
pub(super) async fn checked(
    read: js_sys::Promise,
    index: u64,
    record: Option<&FileRecord>,
) -> Result<Uint8Array, StoreError> {
    let out = JsFuture::from(read).await.map_err(js_error)?;
    let error = Reflect::get(&out, &"error".into()).map_err(js_error)?;
    if !error.is_undefined() {
        return Err(js_error(error));
    }
    let value = Reflect::get(&out, &"value".into()).map_err(js_error)?;
    if value.is_undefined() {
        return Err(StoreError::MissingChunk { index });
    }
    // A chunk whose bytes are gone or unreadable is damaged like one whose bytes changed: the
    // load fetches it again.
    let data: Uint8Array = Reflect::get(&out, &"data".into())
        .map_err(js_error)?
        .dyn_into()
        .map_err(|_| StoreError::CorruptChunk { index })?;
    if let Some(r) = record {
        // Another tab's chunk size, or a replaced version: not this file's chunk.
        let generation = Reflect::get(&value, &"generation".into())
            .map_err(js_error)?
            .as_string()
            .unwrap_or_default();
        if u64::from(data.length()) != r.chunk_len(index) || generation != r.generation {
            return Err(StoreError::CorruptChunk { index });
        }
    }
    // Chunks stored since XXH3 was added are checked by it; older ones by their SHA-256.
    if let Some(stored) = Reflect::get(&value, &"xxh3".into())
        .map_err(js_error)?
        .as_string()
    {
        if xxh3_hex(&data) != stored {
            return Err(StoreError::CorruptChunk { index });
        }
        return Ok(data);
    }
    let stored = Reflect::get(&value, &"sha256".into())
        .map_err(js_error)?
        .as_string();
    let actual = match Reflect::get(&out, &"actual".into())
        .map_err(js_error)?
        .as_string()
    {
        Some(hex) => hex,
        None => sha256_hex(&data).await?,
    };
    if stored.as_deref() != Some(actual.as_str()) {
        return Err(StoreError::CorruptChunk { index });
    }
    Ok(data)
}

/// A stored model file read through [`ChunkStore`]; the last chunk read stays cached (in
/// JavaScript memory) because tensors cross chunk boundaries, and the next `READ_AHEAD` chunks
/// are read and hashed while it is in use.
pub struct IdbChunks {
    db: ModelDb,
    record: FileRecord,
    cache: RefCell<Option<(u64, Uint8Array)>>,
    ahead: RefCell<Vec<(u64, js_sys::Promise)>>,
}

impl IdbChunks {
    pub fn new(db: ModelDb, record: FileRecord) -> Self {
        Self {
            db,
            record,
            cache: RefCell::new(None),
            ahead: RefCell::new(Vec::new()),
        }
    }

    async fn chunk(&self, index: u64) -> Result<Uint8Array, StoreError> {
        if let Some((i, bytes)) = self.cache.borrow().as_ref() {
            if *i == index {
                return Ok(bytes.clone());
            }
        }
        let read = {
            let mut ahead = self.ahead.borrow_mut();
            let mine = ahead.iter().position(|(i, _)| *i == index);
            let read = match mine {
                Some(at) => ahead.swap_remove(at).1,
                None => self.db.start_read(&self.record.url, index),
            };
            // Reads behind this one will not be asked for in a sequential load: dropped.
            ahead.retain(|(i, _)| *i > index);
            let chunks = self.record.size.div_ceil(self.record.chunk_size.max(1));
            for next in index + 1..(index + 1 + READ_AHEAD).min(chunks) {
                if !ahead.iter().any(|(i, _)| *i == next) {
                    ahead.push((next, self.db.start_read(&self.record.url, next)));
                }
            }
            read
        };
        let bytes = checked(read, index, Some(&self.record)).await?;
        *self.cache.borrow_mut() = Some((index, bytes.clone()));
        Ok(bytes)
    }
}

impl ChunkStore for IdbChunks {
    fn len(&self) -> u64 {
        self.record.size
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        super::check_range(offset, buf.len(), self.record.size)?;
        let size = self.record.chunk_size;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / size;
            let chunk = self.chunk(index).await?;
            let start = (pos % size) as u32;
            if start >= chunk.length() {
                return Err(StoreError::CorruptChunk { index });
            }
            let n = ((chunk.length() - start) as usize).min(buf.len() - done);
            chunk
                .subarray(start, start + n as u32)
                .copy_to(&mut buf[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

/// A `Blob` or `File` picked by the user, read a slice at a time.
pub struct BlobChunks {
    blob: web_sys::Blob,
}

impl BlobChunks {
    pub fn new(blob: web_sys::Blob) -> Self {
        Self { blob }
    }
}

impl ChunkStore for BlobChunks {
    fn len(&self) -> u64 {
        self.blob.size() as u64
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        super::check_range(offset, buf.len(), self.len())?;
        let slice = self
            .blob
            .slice_with_f64_and_f64(offset as f64, (offset + buf.len() as u64) as f64)
            .map_err(js_error)?;
        let bytes = JsFuture::from(slice.array_buffer())
            .await
            .map_err(js_error)?;
        let bytes = Uint8Array::new(&bytes);
        if bytes.length() as usize != buf.len() {
            return Err(StoreError::OutOfRange {
                offset,
                len: buf.len() as u64,
                file_len: self.len(),
            });
        }
        bytes.copy_to(buf);
        Ok(())
    }
}
