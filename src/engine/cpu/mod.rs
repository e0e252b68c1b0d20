//! The CPU backend: our forward pass on candle ops, our block-dot tiles (AVX2 on x86, SIMD128 on
//! wasm) and candle's K-quant kernels. One code path serves llama, qwen2 and qwen3; they differ only in flags.

pub(crate) mod activations;
mod kv_cache;
pub mod profile;
mod qmatmul;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128;
mod tiles;
#[cfg(target_arch = "x86_64")]
mod x86;

use candle_core::{Device, Tensor};

use super::schema::{Loader, Weights};
use super::{Backend, EngineError, Pending, Placement};
use crate::gguf::{GgufError, GgufFile, ModelConfig, TensorInfo};
use crate::store::ChunkStore;
use activations::Activations;
use kv_cache::LayerCache;
use profile::{Clock, Part, StepProfile};
use qmatmul::{MatrixLanding, QMatrix};

/// Prompt tokens run through the model at once.
const PREFILL_SLICE: usize = 64;

/// A model loaded for the CPU, with its KV cache.
pub struct CpuBackend {
    config: ModelConfig,
    weights: Weights<QMatrix, Tensor>,
    caches: Vec<LayerCache>,
    profile: Option<Box<StepProfile>>,
}

/// Tensors read straight into their final storage.
struct Cpu;

impl Loader for Cpu {
    type Matrix = QMatrix;
    type Vector = Tensor;

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

    fn vector(&mut self, values: Vec<f32>) -> Result<Tensor, EngineError> {
        let n = values.len();
        Ok(Tensor::from_vec(values, n, &Device::Cpu)?)
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
        let caches = (0..config.n_layer).map(|_| LayerCache::new()).collect();
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

    /// cos and sin tables for positions `start..start + len`.
    fn rope_tables(&self, start: usize, len: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let c = &self.config;
        let (cos, sin) = super::rope::tables(
            c.head_dim,
            c.rope_theta,
            self.weights.rope_factors.as_deref(),
            start,
            len,
        );
        let half = c.head_dim / 2;
        Ok((
            Tensor::from_vec(cos, (len, half), &Device::Cpu)?,
            Tensor::from_vec(sin, (len, half), &Device::Cpu)?,
        ))
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
        let (cos, sin) = self.rope_tables(start, seq)?;
        let mut clock = Clock::start(self.profile.as_deref_mut());
        let mut rows = Vec::with_capacity(seq * c.n_embd);
        for &t in tokens {
            rows.extend(self.weights.embed.row(t as usize)?);
        }
        let mut x = Tensor::from_vec(rows, (seq, c.n_embd), &Device::Cpu)?;
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let total = start + seq;
        let mask = causal_mask(seq, group, start, total)?;
        let interleaved = c.arch.interleaved_rope();
        for (layer, cache) in self.weights.layers.iter().zip(&mut self.caches) {
            clock.lap(Part::Other);
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let hv = h.flatten_all()?.to_vec1::<f32>()?;
            clock.lap(Part::Norms);
            let ha = Activations::new(&hv, seq);
            let (mut q, mut k, mut v) = (
                mm(&layer.wq, &ha)?,
                mm(&layer.wk, &ha)?,
                mm(&layer.wv, &ha)?,
            );
            clock.lap(Part::Matmul);
            if let Some([bq, bk, bv]) = &layer.bias {
                q = q.broadcast_add(bq)?;
                k = k.broadcast_add(bk)?;
                v = v.broadcast_add(bv)?;
            }
            // (seq, heads * dim) -> (heads, seq, dim)
            let heads = |t: Tensor, n: usize| {
                t.reshape((seq, n, c.head_dim))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (mut q, mut k, v) = (
                heads(q, c.n_head)?,
                heads(k, c.n_head_kv)?,
                heads(v, c.n_head_kv)?,
            );
            clock.lap(Part::Other);
            if let Some([qn, kn]) = &layer.qk_norm {
                q = candle_nn::ops::rms_norm(&q, qn, c.rms_eps as f32)?;
                k = candle_nn::ops::rms_norm(&k, kn, c.rms_eps as f32)?;
            }
            clock.lap(Part::Norms);
            let rope = |t: &Tensor| -> candle_core::Result<Tensor> {
                let t = t.unsqueeze(0)?;
                let r = if interleaved {
                    candle_nn::rotary_emb::rope_i(&t, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope(&t, &cos, &sin)?
                };
                r.squeeze(0)
            };
            clock.lap(Part::Other);
            let (q, k) = (rope(&q)?, rope(&k)?);
            let (k_all, v_all) = cache.append(&k, &v, max)?;
            // Query heads of one KV group are stacked so K and V are never repeated:
            // (n_head, seq, dim) -> (n_kv, group * seq, dim).
            let q = q.reshape((c.n_head_kv, group * seq, c.head_dim))?;
            let att = (q.matmul(&k_all.t()?)? * scale)?;
            let att = match &mask {
                Some(m) => att.broadcast_add(m)?,
                None => att,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let out = att.matmul(&v_all)?; // (n_kv, group * seq, dim)
            let out = out
                .reshape((c.n_head, seq, c.head_dim))?
                .transpose(0, 1)?
                .reshape((seq, c.n_head * c.head_dim))?;
            let out = out.flatten_all()?.to_vec1::<f32>()?;
            clock.lap(Part::Attention);
            let o = mm(&layer.wo, &Activations::new(&out, seq))?;
            clock.lap(Part::Matmul);
            x = (x + o)?;
            clock.lap(Part::Other);
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let hv = h.flatten_all()?.to_vec1::<f32>()?;
            clock.lap(Part::Norms);
            let ha = Activations::new(&hv, seq);
            let (gate, up) = (mm(&layer.gate, &ha)?, mm(&layer.up, &ha)?);
            clock.lap(Part::Matmul);
            let ff = (candle_nn::ops::silu(&gate)? * up)?;
            let ff = ff.flatten_all()?.to_vec1::<f32>()?;
            clock.lap(Part::Other);
            let down = mm(&layer.down, &Activations::new(&ff, seq))?;
            clock.lap(Part::Matmul);
            x = (x + down)?;
        }
        let last = x.narrow(0, seq - 1, 1)?;
        clock.lap(Part::Other);
        let last = candle_nn::ops::rms_norm(&last, &self.weights.output_norm, c.rms_eps as f32)?;
        let last = last.flatten_all()?.to_vec1::<f32>()?;
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

/// Runs `f` on a worker of the thread pool, so the caller waits for the pool once per step
/// rather than once per matrix product (each wait is a sleep and a wake-up: measured ~40 µs
/// natively, ~170 products per 0.5B decode step). Without threads, runs it here.
fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(any(not(target_arch = "wasm32"), feature = "threads"))]
    if rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
        let mut out = None;
        // A scope begun outside the pool runs its body on a pool thread.
        rayon::scope(|_| out = Some(f()));
        return out.expect("the scope ran its body");
    }
    f()
}

/// The activation rows times the weight matrix, as a (rows × n_out) tensor.
fn mm(w: &QMatrix, a: &Activations) -> candle_core::Result<Tensor> {
    let out = w.forward(a)?;
    let m = out.len() / w.n_out();
    Tensor::from_vec(out, (m, w.n_out()), &Device::Cpu)
}

/// Additive mask for `seq` new positions after `start` cached ones, rows laid out group-major
/// to match the stacked query heads. None for a single token, which sees everything.
fn causal_mask(
    seq: usize,
    group: usize,
    start: usize,
    total: usize,
) -> candle_core::Result<Option<Tensor>> {
    if seq == 1 {
        return Ok(None);
    }
    let mut m = Vec::with_capacity(group * seq * total);
    for _ in 0..group {
        for i in 0..seq {
            m.extend((0..total).map(|j| {
                if j <= start + i {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                }
            }));
        }
    }
    Ok(Some(Tensor::from_vec(
        m,
        (group * seq, total),
        &Device::Cpu,
    )?))
}

impl Backend for CpuBackend {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        Box::pin(std::future::ready(in_pool(|| self.run(tokens))))
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
