use std::io::{self, Read, Seek, SeekFrom};

use super::ChunkStore;

/// Read + Seek over a [`ChunkStore`]; reads never go past the end of the file.
pub struct ModelReader<S> {
    store: S,
    pos: u64,
}

impl<S: ChunkStore> ModelReader<S> {
    pub fn new(store: S) -> Self {
        Self { store, pos: 0 }
    }

    pub fn len(&self) -> u64 {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: ChunkStore> Read for ModelReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.store.len().saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.store
            .read_at(self.pos, &mut buf[..n])
            .map_err(|e| io::Error::new(io::ErrorKind::UnexpectedEof, e))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<S: ChunkStore> Seek for ModelReader<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.store.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before start of file")
        })?;
        self.pos = target;
        Ok(target)
    }
}
