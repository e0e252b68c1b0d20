//! The router's policy, pure and testable natively: which route answers a chat-completions
//! request (the local model, or the next remote provider), what counts as busy, retries with
//! backoff, circuit breakers, rate limits, key rotation, coalescing, mid-stream continuation,
//! and whether the device is fast enough. The service worker does the I/O and asks it.

mod busy;
pub mod cache;
mod coalesce;
mod config;
mod health;
mod metrics;
mod plan;
mod profile;
mod stitch;

pub use busy::{classify, Signal, Verdict};
pub use coalesce::{key as coalesce_key, Coalescer, Role};
pub use config::{
    ApiKey, BreakerPolicy, ConfigError, Deadlines, Mode, ProviderConfig, RateLimit, RetryPolicy,
    RouterConfig,
};
pub use health::{Admission, Breaker, KeyRing, Limiter};
pub use metrics::Metrics;
pub use plan::{
    continuation, provider_model, unavailable, Choice, Health, Local, Next, Route, Router, Ticket,
};
pub use profile::{assess, Capability, DeviceProfile, GpuProfile, ModelNeeds};
pub use stitch::Stitch;
