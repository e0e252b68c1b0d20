//! The GPU backend: our WGSL kernels (`shaders/`) on wgpu, WebGPU in the browser and Vulkan
//! natively. Weights stream from the chunk store into GPU buffers; a forward step is one
//! command buffer of cached pipelines and bind groups; decode reads back one token id.

pub mod device;
mod forward;
pub mod kernels;
pub mod weights;

pub use device::{Caps, Gpu, Wanted};

use super::{Backend, EngineError, Pending, Pick};
use crate::gguf::{GgufFile, ModelConfig};
use crate::store::AsyncChunkStore;
use forward::Plan;
use kernels::sample::{self, MAX_SEEN};
use kernels::{bytes_f32, words_bytes, Pool};
use weights::{upload_vector, GpuMatrix};

/// Failures of the GPU path; `DeviceLost` and `OutOfMemory` let `auto` carry on on the CPU.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("no usable GPU: {0}")]
    Unavailable(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU ran out of memory: {0}")]
    OutOfMemory(String),
    #[error("the model does not fit the GPU's limits: {0}")]
    Limits(String),
    #[error("GPU validation error: {0}")]
    Validation(String),
}

impl GpuError {
    /// The device failed (as opposed to being absent or refusing the model).
    pub fn is_device_failure(&self) -> bool {
        matches!(
            self,
            GpuError::DeviceLost(_) | GpuError::OutOfMemory(_) | GpuError::Validation(_)
        )
    }
}

struct Layer {
    attn_norm: wgpu::Buffer,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    bias: Option<(wgpu::Buffer, wgpu::Buffer, wgpu::Buffer)>,
    qk_norm: Option<(wgpu::Buffer, wgpu::Buffer)>,
    wo: GpuMatrix,
    ffn_norm: wgpu::Buffer,
    gate: GpuMatrix,
    up: GpuMatrix,
    down: GpuMatrix,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
}

struct Weights {
    embed: GpuMatrix,
    output: Option<GpuMatrix>,
    output_norm: wgpu::Buffer,
    layers: Vec<Layer>,
    rope_factors: Option<Vec<f32>>,
}

/// How to set up the GPU backend.
#[derive(Debug, Clone, Copy)]
pub struct GpuOptions {
    /// Positions the KV cache holds (capped at the model's context).
    pub context: usize,
    /// Tokens per prompt step (the score scratch grows with it).
    pub slice: usize,
    pub wanted: Wanted,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            slice: 64,
            wanted: Wanted::default(),
        }
    }
}

/// A model loaded onto the GPU, with its KV cache.
pub struct GpuBackend {
    gpu: Gpu,
    config: ModelConfig,
    plan: Plan,
    len: usize,
    // The plan's bind groups use these buffers; held here for the bandwidth figures too.
    weights: Weights,
}

impl GpuBackend {
    /// Opens the GPU and loads every weight of `file` from `store` a piece at a time, then
    /// compiles the kernels: `on_progress(phase, done, total)` with phase "load" (tensor bytes)
    /// and "compile" (0 of 1 when it starts, 1 of 1 when done).
    pub async fn load_from<S: AsyncChunkStore>(
        file: &GgufFile,
        store: &S,
        options: GpuOptions,
        on_progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<Self, EngineError> {
        let mut c = ModelConfig::from_gguf(file)?;
        let capacity = options.context.clamp(1, c.context_length);
        c.context_length = capacity;
        let mut slice = options.slice.clamp(1, 64);
        // The device is asked for no bigger a binding than the largest buffer the model wants.
        let largest_matrix = file.tensors().iter().map(|t| t.size * 2).max().unwrap_or(0);
        let scratch = kernels::attention::scratch_bytes(c.n_head, slice, capacity);
        let kv = (c.n_head_kv * capacity * c.head_dim * 4) as u64;
        let wanted = Wanted {
            binding: options
                .wanted
                .binding
                .min(largest_matrix.max(scratch).max(kv)),
            ..options.wanted
        };
        let gpu = Gpu::open(wanted).await?;
        // Long contexts on small bindings take shorter prompt slices rather than failing.
        let per_token = kernels::attention::scratch_bytes(c.n_head, 1, capacity);
        slice = slice.min((gpu.caps.max_binding / per_token) as usize);
        if slice == 0 || kv > gpu.caps.max_binding {
            return Err(GpuError::Limits(format!(
                "a {capacity}-position context needs {} bytes in one binding; this GPU binds {}",
                per_token.max(kv),
                gpu.caps.max_binding
            ))
            .into());
        }
        let total: u64 = file.tensors().iter().map(|t| t.size).sum();
        let mut loaded = 0u64;
        let mut count = |n: u64| {
            loaded += n;
            on_progress("load", loaded, total);
        };
        let base = file.data_offset;
        let (e, hd) = (c.n_embd, c.head_dim);
        let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
        macro_rules! matrix {
            ($name:expr, $n_in:expr, $n_out:expr) => {{
                let info = file
                    .shaped_tensor(AsRef::<str>::as_ref(&$name), &[$n_in as u64, $n_out as u64])?;
                GpuMatrix::upload(
                    &gpu,
                    store,
                    base + info.offset,
                    info.ty,
                    $n_in,
                    $n_out,
                    &mut count,
                )
                .await?
            }};
        }
        macro_rules! vector {
            ($name:expr, $n:expr) => {{
                let info = file.shaped_tensor(AsRef::<str>::as_ref(&$name), &[$n as u64])?;
                let b = upload_vector(&gpu, store, base + info.offset, info.ty, $n).await?;
                count(info.size);
                b
            }};
        }
        let mut layers = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = match c.qkv_bias {
                true => Some((
                    vector!(n("attn_q.bias"), qd),
                    vector!(n("attn_k.bias"), kvd),
                    vector!(n("attn_v.bias"), kvd),
                )),
                false => None,
            };
            let qk_norm = match c.qk_norm {
                true => Some((
                    vector!(n("attn_q_norm.weight"), hd),
                    vector!(n("attn_k_norm.weight"), hd),
                )),
                false => None,
            };
            let cache = |label| kernels::storage(&gpu.device, kv, label);
            layers.push(Layer {
                attn_norm: vector!(n("attn_norm.weight"), e),
                wq: matrix!(n("attn_q.weight"), e, qd),
                wk: matrix!(n("attn_k.weight"), e, kvd),
                wv: matrix!(n("attn_v.weight"), e, kvd),
                bias,
                qk_norm,
                wo: matrix!(n("attn_output.weight"), qd, e),
                ffn_norm: vector!(n("ffn_norm.weight"), e),
                gate: matrix!(n("ffn_gate.weight"), e, c.n_ff),
                up: matrix!(n("ffn_up.weight"), e, c.n_ff),
                down: matrix!(n("ffn_down.weight"), c.n_ff, e),
                k_cache: cache("k cache"),
                v_cache: cache("v cache"),
            });
            gpu.check()?;
        }
        let embed = matrix!("token_embd.weight", e, c.vocab_size);
        let output = match c.tied_embeddings {
            true => None,
            false => Some(matrix!("output.weight", e, c.vocab_size)),
        };
        let rope_factors = match file.tensor_info("rope_freqs.weight") {
            Some(info) => {
                let mut raw = vec![0u8; info.size as usize];
                store
                    .read_at(base + info.offset, &mut raw)
                    .await
                    .map_err(crate::gguf::GgufError::from)?;
                Some(crate::engine::dense::widen(info.ty, &raw, hd / 2)?)
            }
            None => None,
        };
        let output_norm = vector!("output_norm.weight", e);
        let weights = Weights {
            embed,
            output,
            output_norm,
            layers,
            rope_factors,
        };
        let pool = Pool::new(&gpu.device);
        on_progress("compile", 0, 1);
        let plan = Plan::build(&gpu, &pool, &c, &weights, slice, capacity);
        gpu.check()?;
        on_progress("compile", 1, 1);
        Ok(Self {
            gpu,
            config: c,
            plan,
            len: 0,
            weights,
        })
    }

    /// The adapter in use and the features the kernels got.
    pub fn device(&self) -> (&str, Caps) {
        (&self.gpu.adapter, self.gpu.caps)
    }

    /// GPU memory held: weights, and activations, cache and scratch.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (
            self.weights.bytes(),
            self.plan.bytes
                + (self.config.n_layer
                    * 2
                    * self.plan.capacity
                    * self.config.n_head_kv
                    * self.config.head_dim
                    * 4) as u64,
        )
    }

    /// Weight bytes one decode step reads (for bandwidth figures).
    pub fn decode_bytes(&self) -> u64 {
        self.weights.bytes_per_token()
    }

    /// The device, shared (tests lose it on purpose through [`Gpu::lose`]).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if let Some(&token) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(EngineError::InvalidToken {
                token,
                vocab: self.config.vocab_size,
            });
        }
        if self.len + tokens.len() > self.plan.capacity {
            return Err(EngineError::ContextFull {
                needed: self.len + tokens.len(),
                max: self.plan.capacity,
            });
        }
        Ok(())
    }

    /// Records one slice; with `read`, the last row's logits (or the pick) are copied out.
    fn submit(&mut self, tokens: &[u32], read: Readback) {
        let io = &self.plan.io;
        let q = &self.gpu.queue;
        let seq = tokens.len() as u32;
        q.write_buffer(&io.step, 0, &words_bytes(&[seq, self.len as u32, 0, 0]));
        q.write_buffer(&io.ids, 0, &words_bytes(tokens));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.plan
                .body
                .iter()
                .for_each(|op| op.record(&mut pass, seq));
        }
        if !matches!(read, Readback::Nothing) {
            let row = (self.config.n_embd * 4) as u64;
            enc.copy_buffer_to_buffer(&io.x, (seq as u64 - 1) * row, &io.last, 0, row);
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.plan.head.iter().for_each(|op| op.record(&mut pass, 1));
            if let Readback::Pick(greedy) = read {
                self.plan.penalize.record(&mut pass, 1);
                (if greedy {
                    &self.plan.argmax
                } else {
                    &self.plan.top_k
                })
                .record(&mut pass, 1);
            }
        }
        match read {
            Readback::Nothing => {}
            Readback::Logits => {
                enc.copy_buffer_to_buffer(&io.logits, 0, &io.staging, 0, io.logits.size())
            }
            Readback::Pick(_) => enc.copy_buffer_to_buffer(&io.picked, 0, &io.staging, 0, 4),
        }
        q.submit([enc.finish()]);
        self.len += tokens.len();
    }

    async fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_tokens(tokens)?;
        let before = self.len;
        let slices: Vec<&[u32]> = tokens.chunks(self.plan.slice).collect();
        for (i, s) in slices.iter().enumerate() {
            self.submit(
                s,
                if i + 1 == slices.len() {
                    Readback::Logits
                } else {
                    Readback::Nothing
                },
            );
        }
        let bytes = (self.config.vocab_size * 4) as u64;
        match self.gpu.read(&self.plan.io.staging, bytes).await {
            Ok(b) => Ok(bytes_f32(&b)),
            Err(e) => {
                self.len = before;
                Err(e.into())
            }
        }
    }

    async fn run_pick(&mut self, token: u32, pick: &Pick) -> Result<u32, EngineError> {
        self.check_tokens(&[token])?;
        let (uniform, seen) = sample::params(pick, self.config.vocab_size);
        self.gpu
            .queue
            .write_buffer(&self.plan.io.sample, 0, &words_bytes(&uniform));
        if !seen.is_empty() {
            self.gpu
                .queue
                .write_buffer(&self.plan.io.seen, 0, &words_bytes(&seen));
        }
        let before = self.len;
        self.submit(&[token], Readback::Pick(pick.params.temperature <= 0.0));
        match self.gpu.read(&self.plan.io.staging, 4).await {
            Ok(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Err(e) => {
                self.len = before;
                Err(e.into())
            }
        }
    }
}

enum Readback {
    Nothing,
    Logits,
    /// The picked token; greedy or not.
    Pick(bool),
}

impl Weights {
    fn bytes(&self) -> u64 {
        self.layer_bytes() + m_bytes(&self.embed) + self.output.as_ref().map_or(0, m_bytes)
    }

    fn layer_bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]
                    .into_iter()
                    .map(m_bytes)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Weight bytes one decode step reads: every layer matrix and the output projection (the
    /// embedding table only for its one row).
    fn bytes_per_token(&self) -> u64 {
        self.layer_bytes() + m_bytes(self.output.as_ref().unwrap_or(&self.embed))
    }
}

fn m_bytes(w: &GpuMatrix) -> u64 {
    w.parts
        .iter()
        .map(|p| p.quants.size() + p.scales.size())
        .sum()
}

impl Backend for GpuBackend {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        Box::pin(self.run(tokens))
    }

    fn forward_pick<'a>(&'a mut self, token: u32, pick: &'a Pick) -> Option<Pending<'a, u32>> {
        if !sample::on_gpu(pick, self.config.vocab_size) || pick.seen.len() > MAX_SEEN {
            return None;
        }
        Some(Box::pin(self.run_pick(token, pick)))
    }

    fn cache_len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        self.len = self.len.min(len);
        Ok(())
    }
}
