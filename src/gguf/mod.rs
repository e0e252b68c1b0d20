//! GGUF: the one-file model format. Parsing with typed errors, reading tensors out of a chunk
//! store without holding the file twice, and the model config.

mod config;
mod read;
mod tensor_type;
mod value;

use std::collections::HashMap;
use std::io::BufReader;

use crate::store::{ChunkStore, MemoryStore, ModelReader, StoreError};

/// Header bytes fetched at a time from an asynchronous store.
const HEADER_STEP: u64 = 4 << 20;

/// Most bytes a header (metadata and tensor directory) may span. Real headers are 1–20 MB (a
/// 256k vocabulary with merges); counts that fit a 30 GB file but not this are refused before
/// anything is fetched or allocated for them, since the browser holds the header whole.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

pub use config::{Architecture, ModelConfig};
pub use tensor_type::TensorType;
pub use value::{Array, Value};

/// GGML tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;

/// Everything that can be wrong with a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file (magic {found:02x?})")]
    BadMagic { found: [u8; 4] },
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("file ends inside the {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("{what} of {count} does not fit in the {remaining} bytes left in the file")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: u64,
    },
    #[error("{what} would take the header past {budget} bytes (at byte {offset}, {needed} more)")]
    HeaderTooLarge {
        what: &'static str,
        offset: u64,
        needed: u64,
        budget: u64,
    },
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("metadata arrays nested too deeply")]
    ArrayTooDeep,
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("general.alignment {0} is not a power of two up to 1 MiB")]
    BadAlignment(String),
    #[error("tensor {tensor:?} has bad dimensions: {reason}")]
    BadDimensions { tensor: String, reason: String },
    #[error("tensor {tensor:?} has type {type_name} ({type_id}), which is not supported")]
    UnsupportedTensorType {
        tensor: String,
        type_id: u32,
        type_name: &'static str,
    },
    #[error("tensor {tensor:?} at offset {offset} is not aligned to {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {tensor:?} ({size} bytes at data offset {offset}) lies beyond the end of the {file_len}-byte file")]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        file_len: u64,
    },
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} should be {expected}")]
    WrongKeyType { key: String, expected: &'static str },
    #[error("architecture {0:?} is not supported (qwen2, qwen3 and llama are)")]
    UnknownArchitecture(String),
    #[error("tensor {0:?} is missing")]
    MissingTensor(String),
    #[error("tensor {tensor:?} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        tensor: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("model config is inconsistent: {0}")]
    BadConfig(String),
    #[error("reading the model file: {0}")]
    Store(#[from] StoreError),
    #[error("reading the model file: {0}")]
    Io(#[from] std::io::Error),
    #[error("building tensor {tensor:?}: {message}")]
    Tensor { tensor: String, message: String },
}

/// Where one tensor lies and what it holds. `dims` are in GGUF order (innermost first).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Offset from the start of the data section.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Row-major shape, outermost first, as candle wants it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF header: metadata and tensor directory.
#[derive(Debug, Clone)]
pub struct GgufFile {
    pub version: u32,
    metadata: HashMap<String, Value>,
    keys: Vec<String>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    pub alignment: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
    pub file_len: u64,
}

impl GgufFile {
    /// Parses the header of the model file held by `store`, reading only the pieces the
    /// header spans.
    pub async fn read<S: ChunkStore>(store: &S) -> Result<Self, GgufError> {
        let len = store.len();
        let mut window = MemoryStore::partial(len, HEADER_STEP);
        loop {
            let reader = BufReader::with_capacity(1 << 16, ModelReader::new(&window));
            match read::parse(reader, len) {
                Ok(file) => return Ok(file),
                Err(e) => {
                    let Some((first, last)) = window.take_missing() else {
                        return Err(e);
                    };
                    // Every chunk the failed read wanted, so each is fetched once and the
                    // parse is retried once per read that missed, not once per chunk.
                    for index in first..=last {
                        if window.holds(index) {
                            continue;
                        }
                        let start = index * HEADER_STEP;
                        let size = (len - start).min(HEADER_STEP);
                        let mut piece = vec![0u8; usize::try_from(size).unwrap_or(0)];
                        store.read_at(start, &mut piece).await?;
                        window.insert(index, piece);
                    }
                }
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// Metadata keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_str().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "a string",
        })
    }

    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_u64().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "an unsigned integer",
        })
    }

    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_f64().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "a number",
        })
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_array().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "an array",
        })
    }

    /// The directory entry of tensor `name`, after checking its GGUF-order dims.
    pub fn shaped_tensor(&self, name: &str, dims: &[u64]) -> Result<&TensorInfo, GgufError> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor(name.into()))?;
        if info.dims != dims {
            return Err(GgufError::WrongShape {
                tensor: name.into(),
                expected: dims.to_vec(),
                found: info.dims.clone(),
            });
        }
        Ok(info)
    }
}
