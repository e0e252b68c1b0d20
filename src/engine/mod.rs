//! Running a model: the [`Backend`] trait that each compute target implements (CPU on candle,
//! GPU on wgpu), and above it, written once, sampling and the generation loop.

pub mod bandwidth;
pub mod cpu;
pub mod dense;
mod generate;
pub mod gpu;
pub(crate) mod rope;
pub mod sampler;

use std::future::Future;
use std::pin::Pin;

pub use generate::{FinishReason, GenerateRequest, Generation, Run, Session, Timings, Usage};
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
    #[error("prompt is empty")]
    EmptyPrompt,
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
}

impl EngineError {
    /// The GPU went away or ran out of memory: the request can still finish on the CPU.
    pub fn is_gpu_failure(&self) -> bool {
        matches!(self, EngineError::Gpu(e) if e.is_device_failure())
    }
}

/// A backend's work in flight: ready at once on the CPU, after a GPU readback otherwise.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + 'a>>;

/// Drives `future` when it completes without waiting (every native backend does); an error
/// where it would wait (a browser GPU readback), so sync callers get a clear failure.
pub fn ready<T, E: From<EngineError>>(future: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    crate::store::run_ready(future).unwrap_or_else(|| {
        Err(
            EngineError::Compute("this backend answers asynchronously: use the async API".into())
                .into(),
        )
    })
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Compute(e.to_string())
    }
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

    /// [`Backend::forward`] for callers that cannot wait (native code, tests).
    fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        ready(self.forward(tokens))
    }

    /// Runs one token after what the cache holds; returns its logits.
    fn decode(&mut self, token: u32) -> Result<Vec<f32>, EngineError> {
        self.prefill(&[token])
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
    fn reset(&mut self) {
        (**self).reset()
    }
    fn max_positions(&self) -> usize {
        (**self).max_positions()
    }
}
