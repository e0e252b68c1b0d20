use std::cell::Cell;
use std::collections::BTreeMap;

use super::{check_range, ChunkStore, StoreError};

/// Chunks held in memory: all of a file (what tests use), or some of a longer one, enough to
/// parse its header when the rest lives behind an asynchronous store. A read that needs a chunk
/// not held fails and records which one, so the caller can fetch it and try again.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    chunk_size: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
    len: u64,
    /// First and last chunk of the last failed read that are not held.
    missing: Cell<Option<(u64, u64)>>,
}

impl MemoryStore {
    /// Splits `bytes` into chunks of `chunk_size` bytes (at least 1).
    pub fn from_bytes(bytes: &[u8], chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        let chunks = bytes
            .chunks(chunk_size)
            .map(<[u8]>::to_vec)
            .enumerate()
            .map(|(i, c)| (i as u64, c))
            .collect();
        Self {
            chunk_size: chunk_size as u64,
            chunks,
            len: bytes.len() as u64,
            missing: Cell::new(None),
        }
    }

    /// A file of `len` bytes of which no chunk is held yet.
    pub fn partial(len: u64, chunk_size: u64) -> Self {
        Self {
            len,
            chunk_size: chunk_size.max(1),
            ..Self::default()
        }
    }

    pub fn insert(&mut self, index: u64, bytes: Vec<u8>) {
        self.chunks.insert(index, bytes);
    }

    /// Whether chunk `index` is held.
    pub fn holds(&self, index: u64) -> bool {
        self.chunks.contains_key(&index)
    }

    /// The first and last chunk the last failed read wanted, cleared by asking: everything it
    /// needs, so a caller fetches each range once rather than a chunk per retry.
    pub fn take_missing(&self) -> Option<(u64, u64)> {
        self.missing.take()
    }
}

impl MemoryStore {
    /// [`ChunkStore::read_at`] without waiting: the header parser reads through this.
    pub(crate) fn read_now(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        check_range(offset, buf.len(), self.len)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / self.chunk_size;
            let start = (pos % self.chunk_size) as usize;
            let Some(chunk) = self.chunks.get(&index).filter(|c| start < c.len()) else {
                let last = (offset + buf.len() as u64 - 1) / self.chunk_size;
                self.missing.set(Some((index, last)));
                return Err(StoreError::MissingChunk { index });
            };
            let n = (chunk.len() - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[start..start + n]);
            done += n;
        }
        Ok(())
    }
}

impl ChunkStore for MemoryStore {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.read_now(offset, buf)
    }
}
