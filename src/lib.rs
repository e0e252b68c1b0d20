//! candlelight: quantized LLMs in the browser behind an OpenAI-shaped API.
//!
//! What flows where, from the bottom up (a module uses only those above it in this list;
//! tests/code_layout.rs keeps it so):
//! - [`store`]: a model is one GGUF file, kept as chunks behind the async [`store::ChunkStore`]
//!   (memory or disk here, IndexedDB or a `Blob` in the browser);
//! - [`download`] brings a model file into a store over HTTP in verified, resumable chunks, with
//!   the hash a hub (Hugging Face or a mirror) gives, and says whether the server has a newer one;
//! - [`gguf`] parses its header with typed errors and builds the [`gguf::ModelConfig`];
//! - [`tokenizer`] builds the tokenizer from the same file, [`chat`] renders its chat template
//!   and splits R1-style reasoning from the answer;
//! - [`engine`] runs the model behind the [`engine::Backend`] trait ([`engine::cpu`] on candle,
//!   [`engine::gpu`] on wgpu with our WGSL kernels from `shaders/`), reading one per-layer
//!   tensor list ([`engine::schema`]); [`engine::load`] picks the backend (auto, gpu, cpu),
//!   carries `auto` on to the CPU when the GPU fails, and heals a damaged chunk while loading;
//!   above the trait, written once, sampling and the generation loop with usage and timings;
//! - [`structured`] turns JSON schemas, JSON mode and tool calls into a grammar (llguidance's)
//!   that masks the logits beside the forward pass ([`engine::Constraint`]), and parses a model's
//!   tool-call syntax back into calls;
//! - [`openai`] holds the chat-completions wire types, answers a request with a local model
//!   chunk by chunk (one request at a time per model, [`openai::SharedModel`]) and maps every
//!   failure to its stable code and HTTP answer ([`openai::ApiError`]);
//! - [`router`] answers a request from the local model or the next remote provider: the policy
//!   (busy signals, retries, breakers, rate limits, key rotation, the device's speed), the
//!   attempt loop ([`router::Service`]) and the answer cache, driven through the
//!   [`router::Transport`] and [`router::Client`] traits;
//! - `web` (wasm only) is the wasm-bindgen exports and the browser's I/O: the engine and model
//!   cache, the router's transport (`fetch`) and client, IndexedDB for the answer cache and
//!   conversations, the device probe.
//!
//! Small leaves any module may use: [`retry`] (backoff), [`hex`], [`rng`], [`oneshot`], and
//! natively `block_on`, how native callers wait for the async API.
//!
//! The GGUF files tests and benchmarks run on are made by the dev-only `candlelight-fixtures`
//! crate (`crates/fixtures`), never by the library.

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
pub mod structured;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
