//! The GGUF parser. Every count and size read from the header is checked against the bytes the
//! file still has before anything is allocated from it, so a hostile header costs an error only.

use std::collections::HashMap;
use std::io::Read;

use super::tensor_type::{unsupported_type_name, TensorType};
use super::value::{type_id, Array, Value};
use super::{GgufError, GgufFile, TensorInfo, MAX_DIMS, MAX_HEADER_BYTES};

const MAGIC: [u8; 4] = *b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Items reserved ahead of reading them: growth past this is paid for by items actually read,
/// so a count in a header never sizes an allocation on its own.
const PREALLOC_ITEMS: usize = 1 << 12;

/// Capacity to reserve for `count` items read from the header.
fn prealloc(count: u64) -> usize {
    usize::try_from(count).map_or(PREALLOC_ITEMS, |c| c.min(PREALLOC_ITEMS))
}

/// `count` as a loop bound; `Parser::count` held it within the header budget.
fn count_usize(count: u64) -> Result<usize, GgufError> {
    usize::try_from(count).map_err(|_| GgufError::HeaderTooLarge {
        what: "count",
        offset: 0,
        needed: count,
        budget: MAX_HEADER_BYTES,
    })
}

/// Arrays of arrays are legal GGUF; real files nest at most one level, we allow a little more.
const MAX_ARRAY_DEPTH: usize = 4;

/// Bytes each element takes on disk at least, for the "count fits in what is left" check.
fn min_encoded_size(type_id: u32) -> Option<u64> {
    Some(match type_id {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
        type_id::ARRAY => 12,
        _ => return None,
    })
}

struct Parser<R> {
    r: R,
    pos: u64,
    file_len: u64,
}

impl<R: Read> Parser<R> {
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    /// Fails unless `needed` more bytes keep the header within [`MAX_HEADER_BYTES`].
    fn budget(&self, what: &'static str, needed: u64) -> Result<(), GgufError> {
        match self.pos.checked_add(needed) {
            Some(end) if end <= MAX_HEADER_BYTES => Ok(()),
            _ => Err(GgufError::HeaderTooLarge {
                what,
                offset: self.pos,
                needed,
                budget: MAX_HEADER_BYTES,
            }),
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), GgufError> {
        if (buf.len() as u64) > self.remaining() {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos,
            });
        }
        self.budget(what, buf.len() as u64)?;
        self.r.read_exact(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => GgufError::Truncated {
                what,
                offset: self.pos,
            },
            _ => GgufError::Io(e),
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// A count of items that each take at least `min_size` bytes further on.
    fn count(&mut self, what: &'static str, min_size: u64) -> Result<u64, GgufError> {
        let count = self.u64(what)?;
        let needed = count.checked_mul(min_size);
        match needed {
            Some(n) if n <= self.remaining() => {
                self.budget(what, n)?;
                Ok(count)
            }
            _ => Err(GgufError::CountTooLarge {
                what,
                count,
                remaining: self.remaining(),
            }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.count(what, 1)?;
        // `count` held it within the header budget, so it fits a usize even on wasm32.
        let len = usize::try_from(len).map_err(|_| GgufError::HeaderTooLarge {
            what,
            offset: self.pos,
            needed: len,
            budget: MAX_HEADER_BYTES,
        })?;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf, what)?;
        // Some converters store raw bytes in token strings; keep what can be kept.
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn value(&mut self, type_id: u32, depth: usize) -> Result<Value, GgufError> {
        Ok(match type_id {
            type_id::U8 => Value::U8(self.bytes::<1>("value")?[0]),
            type_id::I8 => Value::I8(self.bytes::<1>("value")?[0] as i8),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.bytes("value")?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.bytes("value")?)),
            type_id::U32 => Value::U32(self.u32("value")?),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.bytes("value")?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.bytes("value")?)),
            type_id::BOOL => Value::Bool(self.bytes::<1>("value")?[0] != 0),
            type_id::STRING => Value::String(self.string("string value")?),
            type_id::ARRAY => Value::Array(self.array(depth + 1)?),
            type_id::U64 => Value::U64(self.u64("value")?),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.bytes("value")?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.bytes("value")?)),
            other => return Err(GgufError::UnknownValueType(other)),
        })
    }

    fn array(&mut self, depth: usize) -> Result<Array, GgufError> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep);
        }
        let elem = self.u32("array type")?;
        let min = min_encoded_size(elem).ok_or(GgufError::UnknownValueType(elem))?;
        let n = self.count("array length", min)?;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let mut v = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.bytes("array element")?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match elem {
            type_id::U8 => fixed!(U8, u8),
            type_id::I8 => fixed!(I8, i8),
            type_id::U16 => fixed!(U16, u16),
            type_id::I16 => fixed!(I16, i16),
            type_id::U32 => fixed!(U32, u32),
            type_id::I32 => fixed!(I32, i32),
            type_id::F32 => fixed!(F32, f32),
            type_id::U64 => fixed!(U64, u64),
            type_id::I64 => fixed!(I64, i64),
            type_id::F64 => fixed!(F64, f64),
            type_id::BOOL => {
                let mut v = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    v.push(self.bytes::<1>("array element")?[0] != 0);
                }
                Array::Bool(v)
            }
            type_id::STRING => {
                let mut v = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    v.push(self.string("array string")?);
                }
                Array::String(v)
            }
            type_id::ARRAY => {
                let mut v = Vec::with_capacity(prealloc(n));
                for _ in 0..n {
                    v.push(self.array(depth + 1)?);
                }
                Array::Array(v)
            }
            other => return Err(GgufError::UnknownValueType(other)),
        })
    }

    fn tensor_info(&mut self) -> Result<TensorInfo, GgufError> {
        let name = self.string("tensor name")?;
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDimensions {
                tensor: name,
                reason: format!("{n_dims} dimensions"),
            });
        }
        let mut dims = Vec::with_capacity(MAX_DIMS);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let type_id = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        let ty = TensorType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
            tensor: name.clone(),
            type_id,
            type_name: unsupported_type_name(type_id),
        })?;
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let elements = match elements {
            Some(e) if e > 0 && e < (1 << 48) => e,
            _ => {
                return Err(GgufError::BadDimensions {
                    tensor: name,
                    reason: format!("dims {dims:?}"),
                });
            }
        };
        if dims[0] % ty.block_size as u64 != 0 {
            return Err(GgufError::BadDimensions {
                tensor: name,
                reason: format!(
                    "row of {} is not a multiple of the {} block of {}",
                    dims[0], ty.name, ty.block_size
                ),
            });
        }
        let size = ty
            .byte_size(elements)
            .expect("row length checked against block size");
        Ok(TensorInfo {
            name,
            dims,
            ty,
            offset,
            size,
        })
    }
}

/// Parses header, metadata and tensor directory; tensor data stays where it is.
pub(super) fn parse<R: Read>(r: R, file_len: u64) -> Result<GgufFile, GgufError> {
    let mut p = Parser {
        r,
        pos: 0,
        file_len,
    };
    let magic = p.bytes::<4>("magic")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = p.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    // Smallest tensor info: name length, n_dims, one dim, type, offset.
    let tensor_count = p.count("tensor count", 8 + 4 + 8 + 4 + 8)?;
    // Smallest key/value: key length, value type, one byte of value.
    let kv_count = p.count("metadata count", 8 + 4 + 1)?;

    let mut metadata = HashMap::with_capacity(prealloc(kv_count));
    let mut keys = Vec::with_capacity(prealloc(kv_count));
    for _ in 0..kv_count {
        let key = p.string("metadata key")?;
        let ty = p.u32("metadata type")?;
        let value = p.value(ty, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(GgufError::DuplicateKey(key));
        }
        keys.push(key);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= 1 << 20 => a,
            _ => return Err(GgufError::BadAlignment(format!("{v:?}"))),
        },
    };

    let mut tensors = Vec::with_capacity(prealloc(tensor_count));
    let mut by_name = HashMap::with_capacity(prealloc(tensor_count));
    for i in 0..count_usize(tensor_count)? {
        let info = p.tensor_info()?;
        if by_name.insert(info.name.clone(), i).is_some() {
            return Err(GgufError::DuplicateTensor(info.name));
        }
        tensors.push(info);
    }

    let data_offset = p.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size));
        if !matches!(end, Some(e) if e <= file_len) {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                offset: t.offset,
                size: t.size,
                file_len,
            });
        }
    }

    Ok(GgufFile {
        version,
        metadata,
        keys,
        tensors,
        by_name,
        alignment,
        data_offset,
        file_len,
    })
}
