use std::cell::Cell;
use std::collections::BTreeMap;

use super::{check_range, ChunkStore, StoreError};

/// Some chunks of a longer file held in memory, enough to parse its header when the rest lives
/// behind an asynchronous store. A read that needs a chunk not held fails and records which one,
/// so the caller can fetch it and parse again.
#[derive(Debug, Default)]
pub struct Window {
    len: u64,
    chunk_size: u64,
    chunks: BTreeMap<u64, Vec<u8>>,
    missing: Cell<Option<u64>>,
}

impl Window {
    pub fn new(len: u64, chunk_size: u64) -> Self {
        Self { len, chunk_size: chunk_size.max(1), ..Self::default() }
    }

    pub fn insert(&mut self, index: u64, bytes: Vec<u8>) {
        self.chunks.insert(index, bytes);
    }

    /// The chunk the last failed read wanted, cleared by asking.
    pub fn take_missing(&self) -> Option<u64> {
        self.missing.take()
    }
}

impl ChunkStore for Window {
    fn len(&self) -> u64 {
        self.len
    }

    fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        check_range(offset, buf.len(), self.len)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let index = pos / self.chunk_size;
            let Some(chunk) = self.chunks.get(&index) else {
                self.missing.set(Some(index));
                return Err(StoreError::MissingChunk { index });
            };
            let start = (pos % self.chunk_size) as usize;
            if start >= chunk.len() {
                self.missing.set(Some(index));
                return Err(StoreError::MissingChunk { index });
            }
            let n = (chunk.len() - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[start..start + n]);
            done += n;
        }
        Ok(())
    }
}
