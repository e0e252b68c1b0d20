//! The CPU backend: our forward pass on plain f32 rows (ops.rs), our block-dot tiles (AVX2 on
//! x86, SIMD128 on wasm) and candle's K-quant kernels. One code path serves llama, qwen2 and qwen3; they differ only in flags.

pub(crate) mod activations;
mod columns;
pub(crate) mod crew;
mod kv_cache;
mod ops;
pub mod profile;
mod qmatmul;
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod quads;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
mod tiles;
mod untiled;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::schema::{Loader, Weights};
use super::{Backend, EngineError, Pending, Placement};
use crate::gguf::{GgufError, GgufFile, ModelConfig, TensorInfo};
use crate::store::ChunkStore;
use activations::Activations;
use kv_cache::LayerCache;
use profile::{Clock, Part, StepProfile};
use qmatmul::{forward_many, MatrixLanding, QMatrix};

/// Prompt tokens run through the model at once.
const PREFILL_SLICE: usize = 64;

/// A model loaded for the CPU, with its KV cache.
pub struct CpuBackend {
    config: ModelConfig,
    weights: Weights<QMatrix, Vec<f32>>,
    caches: Vec<LayerCache>,
    profile: Option<Box<StepProfile>>,
}

/// Tensors read straight into their final storage.
struct Cpu;

impl Loader for Cpu {
    type Matrix = QMatrix;
    type Vector = Vec<f32>;

    async fn matrix<S: ChunkStore>(
        &mut self,
        store: &S,
        info: &TensorInfo,
        offset: u64,
        n_in: usize,
        n_out: usize,
        count: &mut dyn FnMut(u64),
    ) -> Result<QMatrix, EngineError> {
        let mut landing = MatrixLanding::new(info.ty, n_in, n_out)?;
        store
            .read_at(offset, landing.bytes_mut())
            .await
            .map_err(GgufError::from)?;
        count(info.size);
        Ok(landing.finish()?)
    }

    fn vector(&mut self, values: Vec<f32>) -> Result<Vec<f32>, EngineError> {
        Ok(values)
    }
}

impl CpuBackend {
    /// Loads every weight of `file` from `store`, each tensor read once into its final storage;
    /// `on_progress(loaded, total)` counts tensor bytes read.
    pub async fn load<S: ChunkStore>(
        file: &GgufFile,
        store: &S,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, EngineError> {
        let config = ModelConfig::from_gguf(file)?;
        let weights = Weights::load(file, store, &config, &mut Cpu, on_progress).await?;
        let width = config.n_head_kv * config.head_dim;
        let caches = (0..config.n_layer)
            .map(|_| LayerCache::new(width))
            .collect();
        Ok(Self {
            config,
            weights,
            caches,
            profile: None,
        })
    }

    /// Starts (from zero) or stops timing each part of the forward pass.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(Box::default);
    }

    /// Time per part since profiling started; None when it is off.
    pub fn profile(&self) -> Option<&StepProfile> {
        self.profile.as_deref()
    }

    /// Caps the context below the model's own (the KV cache grows up to it), to bound memory.
    pub fn limit_context(&mut self, positions: usize) {
        self.config.context_length = self.config.context_length.min(positions.max(1));
    }

    fn run_slice(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let c = self.config.clone();
        let seq = tokens.len();
        if seq == 0 {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(EngineError::InvalidToken {
                token,
                vocab: c.vocab_size,
            });
        }
        let start = self.cache_len();
        let max = self.max_positions();
        if start + seq > max {
            return Err(EngineError::ContextFull {
                needed: start + seq,
                max,
            });
        }
        let (cos, sin) = super::rope::tables(
            c.head_dim,
            c.rope_theta,
            self.weights.rope_factors.as_deref(),
            start,
            seq,
        );
        let mut clock = Clock::start(self.profile.as_deref_mut());
        let mut x = Vec::with_capacity(seq * c.n_embd);
        for &t in tokens {
            x.extend(self.weights.embed.row(t as usize)?);
        }
        let heads = ops::Heads {
            n_head: c.n_head,
            n_kv: c.n_head_kv,
            dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let eps = c.rms_eps as f32;
        let interleaved = c.arch.interleaved_rope();
        for (layer, cache) in self.weights.layers.iter().zip(&mut self.caches) {
            clock.lap(Part::Other);
            let h = ops::rms_norm(&x, &layer.attn_norm, eps);
            clock.lap(Part::Norms);
            let ha = Activations::new(&h, seq);
            let [mut q, mut k, mut v] = forward_many([&layer.wq, &layer.wk, &layer.wv], &ha)?;
            clock.lap(Part::Matmul);
            if let Some([bq, bk, bv]) = &layer.bias {
                ops::add_rows(&mut q, bq);
                ops::add_rows(&mut k, bk);
                ops::add_rows(&mut v, bv);
            }
            clock.lap(Part::Other);
            if let Some([qn, kn]) = &layer.qk_norm {
                ops::rms_norm_in_place(&mut q, qn, eps);
                ops::rms_norm_in_place(&mut k, kn, eps);
            }
            clock.lap(Part::Norms);
            ops::rope(&mut q, c.head_dim, &cos, &sin, interleaved);
            ops::rope(&mut k, c.head_dim, &cos, &sin, interleaved);
            cache.append(&k, &v, max);
            let out = ops::attention(&q, &cache.k, &cache.v, heads, start, seq);
            clock.lap(Part::Attention);
            let o = layer.wo.forward(&Activations::new(&out, seq))?;
            clock.lap(Part::Matmul);
            ops::add(&mut x, &o);
            clock.lap(Part::Other);
            let h = ops::rms_norm(&x, &layer.ffn_norm, eps);
            clock.lap(Part::Norms);
            let ha = Activations::new(&h, seq);
            let [gate, up] = forward_many([&layer.gate, &layer.up], &ha)?;
            clock.lap(Part::Matmul);
            let ff = ops::silu_mul(&gate, &up);
            clock.lap(Part::Other);
            let down = layer.down.forward(&Activations::new(&ff, seq))?;
            clock.lap(Part::Matmul);
            ops::add(&mut x, &down);
        }
        let last = &x[(seq - 1) * c.n_embd..];
        clock.lap(Part::Other);
        let last = ops::rms_norm(last, &self.weights.output_norm, eps);
        clock.lap(Part::Norms);
        let logits = self
            .weights
            .output
            .as_ref()
            .unwrap_or(&self.weights.embed)
            .forward(&Activations::new(&last, 1))?;
        clock.lap(Part::Head);
        Ok(logits)
    }
}

/// Multiply-adds per second of this build's integer dot at its best, on values in registers
/// (`simd128::peak_macs_per_s`); None where the CPU path has no wasm tiles.
pub fn peak_macs_per_s(min_ms: f64) -> Option<f64> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return Some(simd128::peak_macs_per_s(min_ms));
    #[allow(unreachable_code)]
    {
        let _ = min_ms;
        None
    }
}

/// The product of `m` activation rows (`x`, m × n_in) with a matrix of `raw` encoded blocks of
/// type `ty`, n_out × n_in, through the kernels the forward pass uses: for the bandwidth probe
/// and the kernel benchmark.
pub fn probe_matmul(
    ty: crate::gguf::TensorType,
    raw: &[u8],
    n_in: usize,
    n_out: usize,
) -> Result<impl Fn(&[f32], usize) -> candle_core::Result<Vec<f32>>, EngineError> {
    let mut p = MatrixLanding::new(ty, n_in, n_out)?;
    let dst = p.bytes_mut();
    if dst.len() != raw.len() {
        return Err(EngineError::Compute(format!(
            "{} bytes for a {n_out}×{n_in} {} matrix of {} bytes",
            raw.len(),
            ty.name,
            dst.len()
        )));
    }
    dst.copy_from_slice(raw);
    let m = p.finish()?;
    Ok(move |x: &[f32], rows: usize| m.forward(&Activations::new(x, rows)))
}

impl Backend for CpuBackend {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        Box::pin(std::future::ready(crew::step(|| self.run(tokens))))
    }

    fn cache_len(&self) -> usize {
        self.caches.first().map_or(0, LayerCache::len)
    }

    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        self.caches.iter_mut().for_each(|c| c.truncate(len));
        Ok(())
    }

    fn profile(&mut self, on: Option<bool>) -> Option<String> {
        if let Some(on) = on {
            self.set_profiling(on);
        }
        self.profile.as_deref().map(StepProfile::to_json)
    }

    fn placement(&self) -> Placement {
        Placement {
            backend: "cpu",
            ..Placement::default()
        }
    }
}

impl CpuBackend {
    fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let before = self.cache_len();
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if before + tokens.len() > self.max_positions() {
            return Err(EngineError::ContextFull {
                needed: before + tokens.len(),
                max: self.max_positions(),
            });
        }
        // Long prompts run in slices: attention scores grow with slice × context, and wasm memory
        // never shrinks, so one long prompt would otherwise raise the page's memory for good.
        let mut logits = Vec::new();
        for slice in tokens.chunks(PREFILL_SLICE) {
            logits = self.run_slice(slice).inspect_err(|_| {
                // A failed step must not leave half-written positions behind.
                self.caches.iter_mut().for_each(|c| c.truncate(before));
            })?;
        }
        Ok(logits)
    }
}
