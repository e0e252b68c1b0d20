//! Model hyper-parameters read from GGUF metadata, checked for consistency before any weight loads.

use super::{GgufError, GgufFile};

/// Transformer families we run. DeepSeek-R1-Distill-Qwen files say `qwen2`; Distill-Llama says `llama`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }

    /// llama.cpp stores Llama's Q/K rows permuted for pairwise (interleaved) RoPE; Qwen uses halves.
    pub fn interleaved_rope(self) -> bool {
        matches!(self, Architecture::Llama)
    }
}

/// What the engine needs to know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    /// No `output.weight`: logits come from the token embedding matrix.
    pub tied_embeddings: bool,
    /// Q, K and V projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMS norm of Q and K before RoPE (Qwen3).
    pub qk_norm: bool,
}

/// Bounds that no real model exceeds; values past them are header damage, not models.
const MAX_LAYERS: u64 = 1024;
const MAX_WIDTH: u64 = 1 << 20;
const MAX_HEADS: u64 = 4096;

impl ModelConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, GgufError> {
        let arch_name = file.get_str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            other => return Err(GgufError::UnknownArchitecture(other.to_string())),
        };
        let p = arch.name();
        let bounded = |key: &str, max: u64| -> Result<usize, GgufError> {
            let v = file.get_u64(&format!("{p}.{key}"))?;
            if v == 0 || v > max {
                return Err(GgufError::BadConfig(format!(
                    "{p}.{key} = {v} is out of range 1..={max}"
                )));
            }
            Ok(v as usize)
        };
        let n_layer = bounded("block_count", MAX_LAYERS)?;
        let n_embd = bounded("embedding_length", MAX_WIDTH)?;
        let n_ff = bounded("feed_forward_length", MAX_WIDTH)?;
        let n_head = bounded("attention.head_count", MAX_HEADS)?;
        let n_head_kv = match file.get(&format!("{p}.attention.head_count_kv")) {
            Some(_) => bounded("attention.head_count_kv", MAX_HEADS)?,
            None => n_head,
        };
        if n_head % n_head_kv != 0 {
            return Err(GgufError::BadConfig(format!(
                "{n_head} heads do not split into {n_head_kv} KV groups"
            )));
        }
        let head_dim = match file.get(&format!("{p}.attention.key_length")) {
            Some(_) => bounded("attention.key_length", MAX_WIDTH)?,
            None => {
                if n_embd % n_head != 0 {
                    return Err(GgufError::BadConfig(format!(
                        "width {n_embd} does not split into {n_head} heads"
                    )));
                }
                n_embd / n_head
            }
        };
        if head_dim % 2 != 0 {
            return Err(GgufError::BadConfig(format!(
                "head size {head_dim} is odd; RoPE needs pairs"
            )));
        }
        let context_length = match file.get(&format!("{p}.context_length")) {
            Some(_) => bounded("context_length", 1 << 24)?,
            None => 4096,
        };
        let rms_eps = file.get_f64(&format!("{p}.attention.layer_norm_rms_epsilon"))?;
        let rope_theta = match file.get(&format!("{p}.rope.freq_base")) {
            Some(_) => file.get_f64(&format!("{p}.rope.freq_base"))?,
            None => 10_000.0,
        };
        let embd = file
            .tensor_info("token_embd.weight")
            .ok_or_else(|| GgufError::MissingTensor("token_embd.weight".into()))?;
        if embd.dims.len() != 2 || embd.dims[0] != n_embd as u64 {
            return Err(GgufError::WrongShape {
                tensor: embd.name.clone(),
                expected: vec![n_embd as u64, 0],
                found: embd.dims.clone(),
            });
        }
        let vocab_size = embd.dims[1] as usize;
        Ok(ModelConfig {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            vocab_size,
            context_length,
            rms_eps,
            rope_theta,
            tied_embeddings: file.tensor_info("output.weight").is_none(),
            qkv_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            qk_norm: file.tensor_info("blk.0.attn_q_norm.weight").is_some(),
        })
    }
}
