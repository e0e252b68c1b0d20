use super::{check_range, ChunkStore, StoreError};

/// Chunks held in memory: what tests use, and what a page holds while a chunk is in flight.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    chunk_size: u64,
    chunks: Vec<Vec<u8>>,
    len: u64,
}

impl MemoryStore {
    /// Splits `bytes` into chunks of `chunk_size` bytes (at least 1).
    pub fn from_bytes(bytes: &[u8], chunk_size: usize) -> Self {
        let chunk_size = chunk_size.max(1);
        let chunks = bytes.chunks(chunk_size).map(<[u8]>::to_vec).collect();
        Self { chunk_size: chunk_size as u64, chunks, len: bytes.len() as u64 }
    }
}

impl ChunkStore for MemoryStore {
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
            let chunk = self.chunks.get(index as usize).ok_or(StoreError::MissingChunk { index })?;
            let start = (pos % self.chunk_size) as usize;
            let n = (chunk.len() - start).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[start..start + n]);
            done += n;
        }
        Ok(())
    }
}
