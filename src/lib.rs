//! candlelight: quantized LLMs in the browser behind an OpenAI-shaped API.
//!
//! What flows where:
//! - a model is one GGUF file, kept as chunks in a [`store::ChunkStore`] (memory or disk here,
//!   IndexedDB in the browser) and read through [`store::ModelReader`];
//! - [`download`] brings a model file into a store over HTTP in verified, resumable chunks;
//! - [`gguf`] parses its header with typed errors and builds the [`gguf::ModelConfig`];
//! - [`tokenizer`] builds the tokenizer from the same file, [`chat`] renders its chat template
//!   and splits R1-style reasoning from the answer;
//! - [`engine`] runs the model behind the [`engine::Backend`] trait ([`engine::cpu`] on candle,
//!   [`engine::gpu`] on wgpu with our WGSL kernels from `shaders/`) and owns, once, sampling and
//!   the generation loop with usage and timings;
//! - [`openai`] holds the chat-completions wire types and answers a request with a local model,
//!   chunk by chunk;
//! - [`router`] decides, as pure policy, which route answers a request: the local model or the
//!   next remote provider (busy signals, retries, circuit breakers, rate limits, key rotation,
//!   the device's speed); [`retry`] holds the backoff both it and [`download`] use;
//! - `web` (wasm only) exports the engine, the model cache, the router's service-worker I/O, kept
//!   answers and conversations (both in IndexedDB) to JavaScript.
//!
//! The GGUF files tests and benchmarks run on are made by the dev-only `candlelight-fixtures`
//! crate (`crates/fixtures`).

#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("candlelight needs wasm SIMD: build with -C target-feature=+simd128 (.cargo/config.toml sets it)");

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod block_on;
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use block_on::block_on;

pub mod chat;
pub mod download;
pub mod engine;
pub mod gguf;
pub mod hex;
pub mod oneshot;
pub mod openai;
pub mod retry;
pub mod rng;
pub mod router;
pub mod store;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
