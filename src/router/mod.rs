//! The router: which route answers a chat-completions request (the local model, or the next
//! remote provider) and the whole of one request's way through them, natively testable. The
//! policy (busy signals, retries with backoff, circuit breakers, rate limits, key rotation,
//! coalescing, mid-stream continuation, the answer cache, whether the device is fast enough)
//! and the attempt loop are here; the browser supplies only a [`Transport`] (`fetch`, a page's
//! engine) and a [`Client`] (the service worker's response stream).

mod attempt;
mod busy;
pub mod cache;
mod caller;
mod coalesce;
mod config;
mod local;
mod metrics;
mod profile;
mod provider;
mod routes;
mod service;
mod stitch;
mod transport;

pub use attempt::MAX_ANSWER_BYTES;
pub use busy::{classify, Refusal, Signal, Verdict};
pub use cache::{AnswerCache, AnswerStorage, Entry};
pub use caller::{check_caller, Caller, Refused};
pub use coalesce::{key as coalesce_key, Coalescer, Follow, Role, Shared};
pub use config::{
    ApiKey, BreakerPolicy, ConfigError, Deadlines, Mode, ProviderConfig, RateLimit, RetryPolicy,
    RouterConfig, REDACTED,
};
pub use local::EngineReply;
pub use metrics::Metrics;
pub use profile::{assess, Capability, DeviceProfile, GpuProfile, ModelNeeds};
pub use provider::{Admission, Breaker, KeyRing, Limiter, FORBIDDEN_BENCH_MS};
pub use routes::{
    continuation, provider_model, unavailable, Decision, Health, Local, Next, Route, Router, Ticket,
};
pub use service::Service;
pub use service::MAX_REQUEST_BYTES;
pub use stitch::Stitch;
pub use transport::{
    header_text, Client, Head, Outgoing, Piece, Reply, SendError, Start, Transport,
};
