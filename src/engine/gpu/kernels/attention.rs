//! Causal attention over the KV cache with grouped-query heads, for decode and prompt slices,
//! split over the sequence in chunks (flash-decoding) and combined where a step spans several.
//! It takes the fused Q·K·V projection's output as it is: the per-head q/k norm and RoPE run in
//! its prologue, and it writes the step's rotated keys and its values into the cache.

use super::{with_step, Binding, Groups, Kernel};

/// Positions one workgroup attends over; a step whose context spans more is split.
pub const CHUNK: u32 = 256;

pub enum Attention {
    /// Each (query head, chunk, token)'s softmax-weighted values.
    Chunks,
    /// The chunks' results as one, where a step spans more than one chunk.
    Combine,
}

impl Kernel for Attention {
    fn key(&self) -> String {
        format!("attention_{}", self.entry())
    }

    fn source(&self) -> String {
        with_step(&format!(
            "const CHUNK: u32 = {CHUNK}u;\n{}",
            include_str!("../../../../shaders/attention.wgsl")
        ))
    }

    fn entry(&self) -> &'static str {
        match self {
            Attention::Chunks => "main",
            Attention::Combine => "combine",
        }
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[
            Read, ReadWrite, ReadWrite, Read, Read, ReadWrite, ReadWrite, Uniform, Uniform,
        ]
    }

    fn class(&self) -> &'static str {
        "attention"
    }
}

impl Attention {
    /// Workgroups for `heads` query heads.
    pub fn groups(&self, heads: u32) -> Groups {
        match self {
            Attention::Chunks => Groups::Chunks { heads },
            Attention::Combine => Groups::Combine { heads },
        }
    }
}

/// Chunks a step of `seq` tokens after `start` cached positions spans.
pub fn splits(start: u32, seq: u32) -> u32 {
    (start + seq).div_ceil(CHUNK)
}

/// The `AttentionParams` uniform (`shaders/attention.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub capacity: u32,
    /// 1/√head_dim.
    pub scale: f32,
    /// 1: NeoX layout, pairs (j, j + head_dim/2); 0: pairs (2j, 2j+1).
    pub neox: u32,
    /// 1: per-head RMSNorm of queries and keys (weights: queries', then keys').
    pub qk_norm: u32,
    pub eps: f32,
    /// Chunks one token's row of the scratch holds.
    pub max_splits: u32,
}

/// The shape attention runs over.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
    pub neox: bool,
    /// The q/k norm's epsilon, where there is one.
    pub qk_norm: Option<f64>,
}

impl AttentionParams {
    pub fn new(s: Shape) -> Self {
        Self {
            heads: s.heads as u32,
            kv_heads: s.kv_heads as u32,
            head_dim: s.head_dim as u32,
            capacity: s.capacity as u32,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
            neox: s.neox as u32,
            qk_norm: s.qk_norm.is_some() as u32,
            eps: s.qk_norm.unwrap_or(0.0) as f32,
            max_splits: (s.capacity as u32).div_ceil(CHUNK),
        }
    }
}

/// The scratch the chunks' results need for steps of `slice` tokens: per token, query head and
/// chunk, its max, sum and head_dim weighted values.
pub fn scratch_bytes(heads: usize, head_dim: usize, slice: usize, capacity: usize) -> u64 {
    (slice * heads * capacity.div_ceil(CHUNK as usize) * (head_dim + 2) * 4) as u64
}

/// The angle table as (cos, sin) pairs for positions 0..capacity.
pub fn rope_table(
    head_dim: usize,
    theta: f64,
    factors: Option<&[f32]>,
    capacity: usize,
) -> Vec<f32> {
    let (cos, sin) = crate::engine::rope::tables(head_dim, theta, factors, 0, capacity);
    cos.iter().zip(&sin).flat_map(|(c, s)| [*c, *s]).collect()
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
