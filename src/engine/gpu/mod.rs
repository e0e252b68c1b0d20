//! The GPU backend: our WGSL kernels (`shaders/`) on wgpu, WebGPU in the browser and Vulkan
//! natively. Weights stream from the chunk store into GPU buffers; a forward step is one
//! command buffer of cached pipelines and bind groups; decode reads back one token id.

pub mod device;
mod forward;
pub mod kernels;
pub mod profile;
pub mod weights;

pub use device::{Caps, Gpu, Timestamps, Wanted};
pub use profile::Report;

use super::schema::{Loader, Weights};
use super::{Backend, EngineError, Pending, Pick, Placement};
use crate::gguf::{GgufFile, ModelConfig, TensorInfo};
use crate::store::ChunkStore;
use forward::ForwardPass;
use kernels::sample::{self, MAX_SEEN};
use kernels::{bytes_f32, words_bytes, Pool, Step};
use profile::Profiler;
use weights::GpuMatrix;

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

/// The KV cache of one layer.
struct LayerCache {
    k: wgpu::Buffer,
    v: wgpu::Buffer,
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
    pass: ForwardPass,
    len: usize,
    caches: Vec<LayerCache>,
    profiler: Option<Profiler>,
}

/// Tensors streamed to GPU buffers a piece at a time.
struct Upload<'a> {
    gpu: &'a Gpu,
}

impl Loader for Upload<'_> {
    type Matrix = GpuMatrix;
    type Vector = wgpu::Buffer;

    async fn matrix<S: ChunkStore>(
        &mut self,
        store: &S,
        info: &TensorInfo,
        offset: u64,
        n_in: usize,
        n_out: usize,
        count: &mut dyn FnMut(u64),
    ) -> Result<GpuMatrix, EngineError> {
        let m = GpuMatrix::upload(self.gpu, store, offset, info.ty, n_in, n_out, count).await?;
        self.gpu.check()?;
        Ok(m)
    }

    fn vector(&mut self, values: Vec<f32>) -> Result<wgpu::Buffer, EngineError> {
        Ok(kernels::storage_init(
            &self.gpu.device,
            &kernels::f32_bytes(&values),
            "vector",
        ))
    }
}

impl GpuBackend {
    /// Opens the GPU and loads every weight of `file` from `store` a piece at a time, then
    /// compiles the kernels: `on_progress(phase, done, total)` with phase "load" (tensor bytes)
    /// and "compile" (0 of 1 when it starts, 1 of 1 when done).
    pub async fn load<S: ChunkStore>(
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
        if c.head_dim > 256 || c.head_dim % 2 == 1 {
            return Err(GpuError::Limits(format!(
                "the attention kernel takes even head sizes up to 256, not {}",
                c.head_dim
            ))
            .into());
        }
        let scratch = kernels::attention::scratch_bytes(c.n_head, c.head_dim, slice, capacity);
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
        let per_token = kernels::attention::scratch_bytes(c.n_head, c.head_dim, 1, capacity);
        slice = slice.min((gpu.caps.max_binding / per_token) as usize);
        if slice == 0 || kv > gpu.caps.max_binding {
            return Err(GpuError::Limits(format!(
                "a {capacity}-position context needs {} bytes in one binding; this GPU binds {}",
                per_token.max(kv),
                gpu.caps.max_binding
            ))
            .into());
        }
        let weights = Weights::load(
            file,
            store,
            &c,
            &mut Upload { gpu: &gpu },
            &mut |done, total| on_progress("load", done, total),
        )
        .await?;
        let caches = (0..c.n_layer)
            .map(|_| LayerCache {
                k: kernels::storage(&gpu.device, kv, "k cache"),
                v: kernels::storage(&gpu.device, kv, "v cache"),
            })
            .collect::<Vec<_>>();
        gpu.check()?;
        let pool = Pool::new(&gpu.device);
        on_progress("compile", 0, 1);
        let pass = ForwardPass::build(&gpu, &pool, &c, weights, &caches, slice, capacity);
        gpu.check()?;
        on_progress("compile", 1, 1);
        Ok(Self {
            gpu,
            config: c,
            pass,
            len: 0,
            caches,
            profiler: None,
        })
    }

    /// Profiling: `true` starts a fresh [`Report`] (GPU times need the device opened with
    /// [`Wanted::timestamps`]); `false` stops and returns what was collected.
    pub fn profiling(&mut self, on: bool) -> Option<Report> {
        let old = self.profiler.take().map(|p| p.report);
        if on {
            // Timestamps for a prompt of up to 8 slices (a query set holds at most 4096).
            let most = ((self.pass.body.len() + self.pass.head.len() + 2) * 8).min(2048);
            self.profiler = Some(Profiler::new(&self.gpu, most));
        }
        old
    }

    /// The adapter in use and the features the kernels got.
    pub fn device(&self) -> (&str, Caps) {
        (&self.gpu.adapter, self.gpu.caps)
    }

    /// GPU memory held: weights, and activations, cache and scratch.
    pub fn memory_bytes(&self) -> (u64, u64) {
        (
            self.pass.weight_bytes,
            self.pass.bytes
                + self
                    .caches
                    .iter()
                    .map(|c| c.k.size() + c.v.size())
                    .sum::<u64>(),
        )
    }

    /// Dispatches one layer records per step.
    pub fn layer_dispatches(&self) -> usize {
        self.pass.per_layer
    }

    /// Weight bytes one decode step reads (for bandwidth figures).
    pub fn decode_bytes(&self) -> u64 {
        // Every layer matrix and the output projection; of the embedding table, one row.
        self.pass.decode_bytes
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
        if self.len + tokens.len() > self.pass.capacity {
            return Err(EngineError::ContextFull {
                needed: self.len + tokens.len(),
                max: self.pass.capacity,
            });
        }
        Ok(())
    }

    /// Records one slice; with `read`, the last row's logits (or the pick) are copied out.
    fn submit(&mut self, tokens: &[u32], read: Readback) {
        let io = &self.pass.io;
        let q = &self.gpu.queue;
        let seq = tokens.len() as u32;
        let step = Step {
            seq,
            start: self.len as u32,
        };
        q.write_buffer(&io.step, 0, bytemuck::bytes_of(&step));
        q.write_buffer(&io.ids, 0, &words_bytes(tokens));
        let t = web_time::Instant::now();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let mut ops: Vec<_> = self.pass.body.iter().map(|op| (op, step)).collect();
        if !matches!(read, Readback::Nothing) {
            ops.extend(self.pass.head.iter().map(|op| (op, step)));
            if let Readback::Pick(greedy) = read {
                ops.push((&self.pass.penalize, step));
                ops.push((
                    if greedy {
                        &self.pass.argmax
                    } else {
                        &self.pass.top_k
                    },
                    step,
                ));
            }
        }
        profile::record(&mut enc, &ops, self.profiler.as_mut());
        match read {
            Readback::Nothing => {}
            Readback::Logits => {
                enc.copy_buffer_to_buffer(&io.logits, 0, &io.staging, 0, io.logits.size())
            }
            Readback::Pick(_) => enc.copy_buffer_to_buffer(&io.picked, 0, &io.staging, 0, 4),
        }
        profile::resolve(&mut enc, self.profiler.as_ref());
        let commands = enc.finish();
        let encoded = t.elapsed();
        q.submit([commands]);
        if let Some(p) = &mut self.profiler {
            p.report.steps += 1;
            p.report.encode_ns += encoded.as_nanos() as u64;
            p.report.submit_ns += (t.elapsed() - encoded).as_nanos() as u64;
        }
        self.len += tokens.len();
    }

    /// After a submission's result was read: its timestamps, when profiling.
    async fn collect_profile(&mut self) -> Result<(), EngineError> {
        if let Some(p) = &mut self.profiler {
            p.collect(&self.gpu).await?;
        }
        Ok(())
    }

    async fn run(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_tokens(tokens)?;
        let before = self.len;
        let slices: Vec<&[u32]> = tokens.chunks(self.pass.slice).collect();
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
        match self.gpu.read(&self.pass.io.staging, bytes).await {
            Ok(b) => {
                self.collect_profile().await?;
                Ok(bytes_f32(&b))
            }
            Err(e) => {
                self.len = before;
                Err(e.into())
            }
        }
    }

    /// Whether this draw can be made on the GPU (see [`GpuBackend::pick_next`]).
    pub fn picks(&self, pick: &Pick) -> bool {
        sample::on_gpu(pick, self.config.vocab_size) && pick.seen.len() <= MAX_SEEN
    }

    /// Runs `token` and picks the next one on the GPU, reading back only its id.
    pub async fn pick_next(&mut self, token: u32, pick: &Pick) -> Result<u32, EngineError> {
        self.check_tokens(&[token])?;
        let params = sample::PickParams::new(pick, self.config.vocab_size);
        let seen = sample::seen_words(pick);
        self.gpu
            .queue
            .write_buffer(&self.pass.io.sample, 0, bytemuck::bytes_of(&params));
        if !seen.is_empty() {
            self.gpu
                .queue
                .write_buffer(&self.pass.io.seen, 0, &words_bytes(&seen));
        }
        let before = self.len;
        self.submit(&[token], Readback::Pick(pick.params.temperature <= 0.0));
        match self.gpu.read(&self.pass.io.staging, 4).await {
            Ok(b) => {
                self.collect_profile().await?;
                Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
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

impl Backend for GpuBackend {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        Box::pin(self.run(tokens))
    }

    fn forward_pick<'a>(&'a mut self, token: u32, pick: &'a Pick) -> Option<Pending<'a, u32>> {
        if !self.picks(pick) {
            return None;
        }
        Some(Box::pin(self.pick_next(token, pick)))
    }

    fn cache_len(&self) -> usize {
        self.len
    }

    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        self.len = self.len.min(len);
        Ok(())
    }

    fn profile(&mut self, on: Option<bool>) -> Option<String> {
        match on {
            Some(on) => self.profiling(on).filter(|_| !on),
            None => self.profiler.as_ref().map(|p| p.report.clone()),
        }
        .map(|r| r.to_json())
    }

    fn placement(&self) -> Placement {
        Placement {
            backend: "gpu",
            adapter: Some(self.gpu.adapter.clone()),
            shader_f16: self.gpu.caps.f16,
            fallback_reason: None,
        }
    }

    fn gpu(&self) -> Option<&Gpu> {
        Some(&self.gpu)
    }
}
