//! Running a model: the [`Backend`] trait that each compute target implements (CPU on candle,
//! GPU on wgpu), which backend a model gets and auto's carrying on on the CPU when the GPU fails
//! ([`load`]), and above the trait, written once, sampling and the generation loop.

pub mod bandwidth;
mod constraint;
pub mod cpu;
pub mod dense;
mod fallback;
mod generate;
pub mod gpu;
pub mod iq4;
pub mod load;
pub(crate) mod rope;
pub mod sampler;
pub mod schema;

use std::future::Future;
use std::pin::Pin;

pub use constraint::Constraint;
pub use generate::{FinishReason, GenerateRequest, Generation, Session, Timings, Usage};
pub use load::{load_backend, load_healing, BackendChoice, ChunkSource, LoadOptions};
pub use sampler::{Pick, Sampler, SamplingParams};

use crate::gguf::{GgufError, ModelConfig};

/// Failures while running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("compute error: {0}")]
    Compute(String),
    #[error("context is full: {needed} tokens needed, the model holds {max}")]
    ContextFull { needed: usize, max: usize },
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    InvalidToken { token: u32, vocab: usize },
    #[error("invalid sampling parameters: {0}")]
    BadParams(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("chat template error: {0}")]
    Template(String),
    /// The model file passed a limit set against hostile files (template size or work, token
    /// length): the file is at fault.
    #[error("model file refused: {0}")]
    ModelLimit(String),
    #[error("output constraint failed: {0}")]
    Constraint(String),
    #[error("prompt is empty")]
    EmptyPrompt,
    #[error("model chunk {index} keeps failing its check after being fetched again")]
    ChunkKeepsFailing { index: u64 },
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
}

impl EngineError {
    /// The GPU went away or ran out of memory: the request can still finish on the CPU.
    pub fn is_gpu_failure(&self) -> bool {
        matches!(self, EngineError::Gpu(e) if e.is_device_failure())
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Compute(e.to_string())
    }
}

impl From<crate::store::StoreError> for EngineError {
    fn from(e: crate::store::StoreError) -> Self {
        EngineError::Gguf(e.into())
    }
}

/// A backend's work in flight: ready at once on the CPU, after a GPU readback otherwise.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + 'a>>;

/// Where a model runs, as `engine.info` reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// "cpu" or "gpu".
    pub backend: &'static str,
    /// The GPU adapter, when on the GPU.
    pub adapter: Option<String>,
    /// The kernels dequantize in f16 (`shader-f16`).
    pub shader_f16: bool,
    /// Why a model that could have run on the GPU runs on the CPU.
    pub fallback_reason: Option<String>,
}

/// A compute target that runs one model with one KV cache.
pub trait Backend {
    fn config(&self) -> &ModelConfig;

    /// Runs `tokens` after what the cache holds; resolves to the logits of the last one.
    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>>;

    /// Runs `token` and picks the one after it on the device, so only its id is read back.
    /// None: this backend hands the logits to the host sampler.
    fn forward_pick<'a>(&'a mut self, _token: u32, _pick: &'a Pick) -> Option<Pending<'a, u32>> {
        None
    }

    /// How many positions the KV cache holds.
    fn cache_len(&self) -> usize;

    /// Forgets every position from `len` on, so a shared prompt prefix is reused.
    fn truncate(&mut self, len: usize) -> Result<(), EngineError>;

    /// Empties the KV cache.
    fn reset(&mut self) {
        // Truncating to zero cannot fail.
        let _ = self.truncate(0);
    }

    /// The most positions the cache can hold.
    fn max_positions(&self) -> usize {
        self.config().context_length
    }

    /// Where the model runs.
    fn placement(&self) -> Placement;

    /// Starts timing each part of a step (`Some(true)`, from zero), stops (`Some(false)`) or
    /// reads (`None`) it: JSON per step (the CPU's milliseconds per part; the GPU's dispatches
    /// and encode time).
    fn profile(&mut self, _on: Option<bool>) -> Option<String> {
        None
    }

    /// The GPU device, when the model runs on one (tests and apps lose it on purpose).
    fn gpu(&self) -> Option<&gpu::Gpu> {
        None
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        (**self).forward(tokens)
    }
    fn forward_pick<'a>(&'a mut self, token: u32, pick: &'a Pick) -> Option<Pending<'a, u32>> {
        (**self).forward_pick(token, pick)
    }
    fn cache_len(&self) -> usize {
        (**self).cache_len()
    }
    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        (**self).truncate(len)
    }
    fn profile(&mut self, on: Option<bool>) -> Option<String> {
        (**self).profile(on)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn max_positions(&self) -> usize {
        (**self).max_positions()
    }
    fn placement(&self) -> Placement {
        (**self).placement()
    }
    fn gpu(&self) -> Option<&gpu::Gpu> {
        (**self).gpu()
    }
}
