//! Where model bytes live: a model file is stored as fixed-size chunks, read back through
//! [`ModelReader`] (Read + Seek) so the parser never needs the file as one buffer. Stores whose
//! reads complete later (IndexedDB, a `Blob`) implement [`AsyncChunkStore`]; weight loading is
//! written against that, and synchronous stores join through [`Ready`].

mod file;
#[cfg(target_arch = "wasm32")]
pub mod indexed_db;
mod memory;
mod reader;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

pub use file::FileStore;
pub use memory::MemoryStore;
pub use reader::ModelReader;

/// Failures of a chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read of {len} bytes at offset {offset} is beyond the end of the model file ({file_len} bytes)")]
    OutOfRange {
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("chunk {index} is missing from the store")]
    MissingChunk { index: u64 },
    #[error("chunk {index} is damaged: its SHA-256 does not match the one stored with it")]
    CorruptChunk { index: u64 },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage quota exceeded: {0}")]
    Quota(String),
    #[error("storage error: {0}")]
    Backend(String),
}

/// A model file kept as numbered chunks of `chunk_size()` bytes (the last one may be shorter).
pub trait ChunkStore {
    /// Total length of the model file in bytes.
    fn len(&self) -> u64;
    /// Size of every chunk but the last.
    fn chunk_size(&self) -> u64;
    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: ChunkStore + ?Sized> ChunkStore for &S {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn chunk_size(&self) -> u64 {
        (**self).chunk_size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        (**self).read_at(offset, buf)
    }
}

fn check_range(offset: u64, len: usize, file_len: u64) -> Result<(), StoreError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(StoreError::OutOfRange {
            offset,
            len,
            file_len,
        }),
    }
}

/// A model file whose reads complete later: IndexedDB chunks, a `Blob` in the browser.
// Futures stay on one thread (wasm has one), so no Send bound is wanted on them.
#[allow(async_fn_in_trait)]
pub trait AsyncChunkStore {
    /// Total length of the model file in bytes.
    fn len(&self) -> u64;
    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A synchronous [`ChunkStore`] seen through [`AsyncChunkStore`]: every read is ready at once.
pub struct Ready<S>(pub S);

impl<S: ChunkStore> AsyncChunkStore for Ready<S> {
    fn len(&self) -> u64 {
        self.0.len()
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.0.read_at(offset, buf)
    }
}

/// Runs `future` to completion if it never waits (as with [`Ready`] stores); None if it would.
pub fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
