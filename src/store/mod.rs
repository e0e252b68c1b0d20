//! Where model bytes live: a model file is stored as chunks and read back at any offset through
//! [`ChunkStore`]. Reads complete later in the browser (IndexedDB, a `Blob`) and at once natively
//! (memory, disk); every caller awaits them, so one code path serves both.

mod file;
#[cfg(target_arch = "wasm32")]
mod idb_chunks;
#[cfg(target_arch = "wasm32")]
pub mod indexed_db;
mod memory;
mod reader;
pub mod sealed;

pub use file::FileStore;
pub use memory::MemoryStore;
pub(crate) use reader::ModelReader;

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
    #[error(
        "chunk {index} of the sealed model does not open with this key (a wrong key, or damage)"
    )]
    Decryption { index: u64 },
    #[error("not a sealed model file: {0}")]
    NotSealed(String),
}

impl StoreError {
    /// The chunk to fetch again: damaged, or gone (a browser may evict storage that is not
    /// persisted).
    pub fn bad_chunk(&self) -> Option<u64> {
        match self {
            StoreError::CorruptChunk { index } | StoreError::MissingChunk { index } => Some(*index),
            _ => None,
        }
    }
}

/// One model file, read at any offset.
// Futures stay on one thread (wasm has one), so no Send bound is wanted on them.
#[allow(async_fn_in_trait)]
pub trait ChunkStore {
    /// Total length of the model file in bytes.
    fn len(&self) -> u64;
    /// Copies `buf.len()` bytes starting at `offset` into `buf`.
    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: ChunkStore + ?Sized> ChunkStore for &S {
    fn len(&self) -> u64 {
        (**self).len()
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        (**self).read_at(offset, buf).await
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
