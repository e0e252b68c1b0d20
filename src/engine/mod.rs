//! Running a model: the [`Backend`] trait that each compute target implements (CPU on candle now,
//! WebGPU later), and above it, written once, sampling and the generation loop.

pub mod cpu;
mod generate;
pub mod sampler;

pub use generate::{FinishReason, GenerateRequest, Generation, Run, Session, Timings, Usage};
pub use sampler::{Sampler, SamplingParams};

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
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Compute(e.to_string())
    }
}

/// A compute target that runs one model with one KV cache.
pub trait Backend {
    fn config(&self) -> &ModelConfig;

    /// Runs `tokens` after what the cache holds; returns the logits of the last one.
    fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError>;

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
    fn prefill(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        (**self).prefill(tokens)
    }
    fn decode(&mut self, token: u32) -> Result<Vec<f32>, EngineError> {
        (**self).decode(token)
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
