use std::io::{self, Read};

use super::{ChunkStore, MemoryStore};

/// Read over the header bytes held so far, for the GGUF parser; reads never go past the
/// end of the file, and one that needs a chunk not held fails (see [`MemoryStore::partial`]).
pub(crate) struct ModelReader<'a> {
    store: &'a MemoryStore,
    pos: u64,
}

impl<'a> ModelReader<'a> {
    pub fn new(store: &'a MemoryStore) -> Self {
        Self { store, pos: 0 }
    }
}

impl Read for ModelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.store.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.store
            .read_now(self.pos, &mut buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e))?;
        self.pos += n as u64;
        Ok(n)
    }
}
