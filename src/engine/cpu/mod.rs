//! The CPU backend: our forward pass on candle ops and candle's quantized matmuls (AVX on x86,
//! SIMD128 on wasm). One code path serves llama, qwen2 and qwen3; they differ only in flags.

mod kv_cache;
mod qmatmul;
#[cfg(target_arch = "x86_64")]
mod x86;

use candle_core::{Device, Tensor};

use super::{Backend, EngineError, Pending};
use crate::gguf::{GgufError, GgufFile, ModelConfig};
use crate::store::{run_ready, AsyncChunkStore, ChunkStore, Ready};
use kv_cache::LayerCache;
use qmatmul::{Activations, PendingMatrix, QMatrix};

/// Prompt tokens run through the model at once.
const PREFILL_SLICE: usize = 64;

struct Layer {
    attn_norm: Tensor,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    bias: Option<(Tensor, Tensor, Tensor)>,
    qk_norm: Option<(Tensor, Tensor)>,
    wo: QMatrix,
    ffn_norm: Tensor,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
    cache: LayerCache,
}

/// A model loaded for the CPU, with its KV cache.
pub struct CpuBackend {
    config: ModelConfig,
    embed: QMatrix,
    layers: Vec<Layer>,
    output_norm: Tensor,
    /// None when the embedding matrix doubles as the output projection.
    output: Option<QMatrix>,
    /// Per-pair RoPE frequency divisors (Llama 3 `rope_freqs.weight`), if the file has them.
    rope_factors: Option<Vec<f32>>,
    exact: bool,
}

struct Loader<'a, S> {
    file: &'a GgufFile,
    store: &'a S,
    loaded: std::cell::Cell<u64>,
    total: u64,
    on_progress: std::cell::RefCell<&'a mut dyn FnMut(u64, u64)>,
}

impl<S: AsyncChunkStore> Loader<'_, S> {
    /// A tensor of GGUF-order `dims` as `n_out` rows of `n_in`, read into its final storage.
    async fn load(
        &self,
        name: &str,
        dims: &[u64],
        n_in: usize,
        n_out: usize,
    ) -> Result<QMatrix, EngineError> {
        let info = self.file.shaped_tensor(name, dims)?;
        let mut pending = PendingMatrix::new(info.ty, n_in, n_out);
        self.store
            .read_at(self.file.data_offset + info.offset, pending.bytes_mut())
            .await
            .map_err(GgufError::from)?;
        self.loaded.set(self.loaded.get() + info.size);
        (self.on_progress.borrow_mut())(self.loaded.get(), self.total);
        Ok(pending.finish()?)
    }

    async fn matmul(&self, name: &str, n_in: usize, n_out: usize) -> Result<QMatrix, EngineError> {
        self.load(name, &[n_in as u64, n_out as u64], n_in, n_out)
            .await
    }

    async fn vector(&self, name: &str, n: usize) -> Result<Tensor, EngineError> {
        let values = self.load(name, &[n as u64], n, 1).await?.row(0)?;
        Ok(Tensor::from_vec(values, n, &Device::Cpu)?)
    }
}

impl CpuBackend {
    /// Loads every weight of `file` from `store`; the file's bytes are read once, tensor by tensor.
    pub fn load<S: ChunkStore>(file: &GgufFile, store: &S) -> Result<Self, EngineError> {
        run_ready(Self::load_from(file, &Ready(store), &mut |_, _| {})).unwrap_or_else(|| {
            Err(EngineError::Compute(
                "a synchronous store returned a pending read".into(),
            ))
        })
    }

    /// Loads every weight of `file` from an asynchronous store (IndexedDB in the browser);
    /// `on_progress(loaded, total)` counts tensor bytes read.
    pub async fn load_from<S: AsyncChunkStore>(
        file: &GgufFile,
        store: &S,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, EngineError> {
        let c = ModelConfig::from_gguf(file)?;
        let total = file.tensors().iter().map(|t| t.size).sum();
        let l = Loader {
            file,
            store,
            loaded: 0.into(),
            total,
            on_progress: std::cell::RefCell::new(on_progress),
        };
        let (q_dim, kv_dim) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = if c.qkv_bias {
                Some((
                    l.vector(&n("attn_q.bias"), q_dim).await?,
                    l.vector(&n("attn_k.bias"), kv_dim).await?,
                    l.vector(&n("attn_v.bias"), kv_dim).await?,
                ))
            } else {
                None
            };
            let qk_norm = if c.qk_norm {
                Some((
                    l.vector(&n("attn_q_norm.weight"), c.head_dim).await?,
                    l.vector(&n("attn_k_norm.weight"), c.head_dim).await?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: l.vector(&n("attn_norm.weight"), c.n_embd).await?,
                wq: l.matmul(&n("attn_q.weight"), c.n_embd, q_dim).await?,
                wk: l.matmul(&n("attn_k.weight"), c.n_embd, kv_dim).await?,
                wv: l.matmul(&n("attn_v.weight"), c.n_embd, kv_dim).await?,
                bias,
                qk_norm,
                wo: l.matmul(&n("attn_output.weight"), q_dim, c.n_embd).await?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), c.n_embd).await?,
                gate: l.matmul(&n("ffn_gate.weight"), c.n_embd, c.n_ff).await?,
                up: l.matmul(&n("ffn_up.weight"), c.n_embd, c.n_ff).await?,
                down: l.matmul(&n("ffn_down.weight"), c.n_ff, c.n_embd).await?,
                cache: LayerCache::new(),
            });
        }
        let embed = l
            .matmul("token_embd.weight", c.n_embd, c.vocab_size)
            .await?;
        let output = match c.tied_embeddings {
            true => None,
            false => Some(l.matmul("output.weight", c.n_embd, c.vocab_size).await?),
        };
        let rope_factors = match file.tensor_info("rope_freqs.weight") {
            Some(_) => Some(
                l.vector("rope_freqs.weight", c.head_dim / 2)
                    .await?
                    .to_vec1::<f32>()?,
            ),
            None => None,
        };
        Ok(Self {
            output_norm: l.vector("output_norm.weight", c.n_embd).await?,
            config: c,
            embed,
            layers,
            output,
            rope_factors,
            exact: false,
        })
    }

    /// Keeps activations in f32 and dots them with dequantized weights, instead of ggml's
    /// 8-bit rounding: slower, and the reference the GPU backend's arithmetic is checked against.
    pub fn exact_activations(&mut self, on: bool) {
        self.exact = on;
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
            self.rope_factors.as_deref(),
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
        let mut rows = Vec::with_capacity(seq * c.n_embd);
        for &t in tokens {
            rows.extend(self.embed.row(t as usize)?);
        }
        let mut x = Tensor::from_vec(rows, (seq, c.n_embd), &Device::Cpu)?;
        let group = c.n_head / c.n_head_kv;
        let scale = 1.0 / (c.head_dim as f64).sqrt();
        let total = start + seq;
        let mask = causal_mask(seq, group, start, total)?;
        let interleaved = c.arch.interleaved_rope();
        for layer in &mut self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps as f32)?;
            let hv = h.flatten_all()?.to_vec1::<f32>()?;
            let ha = Activations::new(&hv, seq).exact(self.exact);
            let (mut q, mut k, mut v) = (
                mm(&layer.wq, &ha)?,
                mm(&layer.wk, &ha)?,
                mm(&layer.wv, &ha)?,
            );
            if let Some((bq, bk, bv)) = &layer.bias {
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
            if let Some((qn, kn)) = &layer.qk_norm {
                q = candle_nn::ops::rms_norm(&q, qn, c.rms_eps as f32)?;
                k = candle_nn::ops::rms_norm(&k, kn, c.rms_eps as f32)?;
            }
            let rope = |t: &Tensor| -> candle_core::Result<Tensor> {
                let t = t.unsqueeze(0)?;
                let r = if interleaved {
                    candle_nn::rotary_emb::rope_i(&t, &cos, &sin)?
                } else {
                    candle_nn::rotary_emb::rope(&t, &cos, &sin)?
                };
                r.squeeze(0)
            };
            let (q, k) = (rope(&q)?, rope(&k)?);
            let (k_all, v_all) = layer.cache.append(&k, &v, max)?;
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
            x = (x + mm(&layer.wo, &Activations::new(&out, seq).exact(self.exact))?)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps as f32)?;
            let hv = h.flatten_all()?.to_vec1::<f32>()?;
            let ha = Activations::new(&hv, seq).exact(self.exact);
            let ff = (candle_nn::ops::silu(&mm(&layer.gate, &ha)?)? * mm(&layer.up, &ha)?)?;
            let ff = ff.flatten_all()?.to_vec1::<f32>()?;
            x = (x + mm(&layer.down, &Activations::new(&ff, seq).exact(self.exact))?)?;
        }
        let last = x.narrow(0, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.output_norm, c.rms_eps as f32)?;
        let last = last.flatten_all()?.to_vec1::<f32>()?;
        Ok(self
            .output
            .as_ref()
            .unwrap_or(&self.embed)
            .forward(&Activations::new(&last, 1).exact(self.exact))?)
    }
}

/// A matrix × vector on `raw` blocks of the given shape, for the bandwidth probe.
pub(crate) fn probe_matvec(
    raw: &[u8],
    n_in: usize,
    n_out: usize,
) -> Result<impl Fn(&[f32]) -> Result<Vec<f32>, EngineError>, EngineError> {
    let mut p = PendingMatrix::new(crate::gguf::TensorType::Q4_0, n_in, n_out);
    p.bytes_mut().copy_from_slice(raw);
    let m = p.finish()?;
    Ok(move |x: &[f32]| Ok(m.forward(&Activations::new(x, 1))?))
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
        Box::pin(std::future::ready(self.run(tokens)))
    }

    fn cache_len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.cache.len())
    }

    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        self.layers.iter_mut().for_each(|l| l.cache.truncate(len));
        Ok(())
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
                self.layers
                    .iter_mut()
                    .for_each(|l| l.cache.truncate(before));
            })?;
        }
        Ok(logits)
    }
}
