//! Writing GGUF files: what the fixture generator uses to make test and benchmark models.

use std::io::{self, Write};

use super::tensor_type::TensorType;
use super::value::{Array, Value};

/// One tensor to write: GGUF-order dims and its encoded bytes.
#[derive(Debug, Clone)]
pub struct TensorData {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    pub bytes: Vec<u8>,
}

/// Collects metadata and tensors, then writes a version-3 GGUF file.
#[derive(Debug, Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorData>,
}

const ALIGNMENT: u64 = 32;

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    pub fn tensor(&mut self, tensor: TensorData) -> &mut Self {
        self.tensors.push(tensor);
        self
    }

    pub fn write_to<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let mut pos = 0u64;
        let put = |w: &mut W, pos: &mut u64, b: &[u8]| -> io::Result<()> {
            *pos += b.len() as u64;
            w.write_all(b)
        };
        put(w, &mut pos, b"GGUF")?;
        put(w, &mut pos, &3u32.to_le_bytes())?;
        put(w, &mut pos, &(self.tensors.len() as u64).to_le_bytes())?;
        put(w, &mut pos, &(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            let mut buf = Vec::new();
            put_string(&mut buf, key);
            buf.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut buf, value);
            put(w, &mut pos, &buf)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let mut buf = Vec::new();
            put_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id.to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            put(w, &mut pos, &buf)?;
            offsets.push(offset);
            offset = (offset + t.bytes.len() as u64).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        let pad = pos.div_ceil(ALIGNMENT) * ALIGNMENT - pos;
        put(w, &mut pos, &vec![0u8; pad as usize])?;
        let mut written = 0u64;
        for (t, off) in self.tensors.iter().zip(offsets) {
            put(w, &mut pos, &vec![0u8; (off - written) as usize])?;
            put(w, &mut pos, &t.bytes)?;
            written = off + t.bytes.len() as u64;
        }
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }
}

fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(u8::from(*x)),
        Value::String(s) => put_string(buf, s),
        Value::Array(a) => put_array(buf, a),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(buf: &mut Vec<u8>, a: &Array) {
    buf.extend_from_slice(&a.elem_type_id().to_le_bytes());
    buf.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => buf.extend_from_slice(v),
        Array::I8(v) => buf.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
        Array::Bool(v) => buf.extend(v.iter().map(|&x| u8::from(x))),
        Array::String(v) => v.iter().for_each(|s| put_string(buf, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(buf, inner)),
    }
}
