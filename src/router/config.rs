//! The router's one configuration struct, the same shape from JavaScript (camelCase JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which routes a request may take, and in what order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The local model when the device is capable, remote providers when it is too weak; each
    /// is the other's fallback.
    #[default]
    Auto,
    LocalFirst,
    RemoteFirst,
    LocalOnly,
    RemoteOnly,
}

/// Everything the router needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RouterConfig {
    pub mode: Mode,
    /// Remote providers, in priority order.
    pub providers: Vec<ProviderConfig>,
    /// Estimated local decode speed below which the device counts as too weak.
    pub min_local_tokens_per_s: f64,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    /// A key older than this draws a warning.
    pub key_max_age_days: f64,
    /// Deadlines of the local route: a page that closed or froze mid-answer counts as stalled,
    /// and the answer continues elsewhere.
    pub local_deadlines: Deadlines,
    /// The byte cap of the answer cache: answers to deterministic requests (served when every route
    /// fails); 0 keeps none.
    pub cache_bytes: u64,
    /// Other origins whose pages may call the router's `/v1/` (as `https://app.example`); by
    /// default only the router's own origin may.
    pub allowed_origins: Vec<String>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Auto,
            providers: Vec::new(),
            local_deadlines: Deadlines {
                connect_ms: 10_000.0,
                first_byte_ms: 120_000.0,
                stall_ms: 20_000.0,
            },
            min_local_tokens_per_s: 8.0,
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            key_max_age_days: 90.0,
            cache_bytes: 500_000_000,
            allowed_origins: Vec::new(),
        }
    }
}

/// One OpenAI-compatible remote (DeepSeek's API, another cloud, the user's own server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderConfig {
    pub name: String,
    /// Up to `/v1` (or the provider's equivalent); `/chat/completions` is appended.
    pub base_url: String,
    /// The request's model name → this provider's; a name not listed is sent as it is.
    pub models: BTreeMap<String, String>,
    /// Used in order; the next one takes over when one is refused (401/403) or out of quota.
    pub keys: Vec<ApiKey>,
    /// Tries after the first on busy answers, before failing over.
    pub max_retries: u32,
    pub rate: RateLimit,
    pub deadlines: Deadlines,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            base_url: String::new(),
            models: BTreeMap::new(),
            keys: Vec::new(),
            max_retries: 2,
            rate: RateLimit::default(),
            deadlines: Deadlines::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiKey {
    pub key: String,
    /// When the key was issued (Unix ms), for the age warning; unknown if absent.
    pub created_ms: Option<f64>,
}

/// A token bucket (sustained rate and burst) and a cap on requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimit {
    pub requests_per_s: f64,
    pub burst: f64,
    pub max_concurrent: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            requests_per_s: 5.0,
            burst: 10.0,
            max_concurrent: 4,
        }
    }
}

/// How long a provider may take before it counts as busy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Deadlines {
    pub connect_ms: f64,
    /// From sending the request to the first byte of the answer.
    pub first_byte_ms: f64,
    /// The longest silence between two chunks of a stream.
    pub stall_ms: f64,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            connect_ms: 5_000.0,
            first_byte_ms: 20_000.0,
            stall_ms: 15_000.0,
        }
    }
}

/// Exponential backoff with full jitter between tries of one provider.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryPolicy {
    pub base_ms: f64,
    pub cap_ms: f64,
    /// A provider's Retry-After longer than this fails over instead of waiting.
    pub max_wait_ms: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 500.0,
            cap_ms: 8_000.0,
            max_wait_ms: 10_000.0,
        }
    }
}

/// When a provider's circuit opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BreakerPolicy {
    /// Consecutive failed requests that open the circuit.
    pub failures: u32,
    pub open_ms: f64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failures: 3,
            open_ms: 30_000.0,
        }
    }
}

/// A configuration the router cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("mode {0:?} needs at least one provider")]
    NoProviders(Mode),
    #[error("provider {index} has no name")]
    Unnamed { index: usize },
    #[error("provider {name:?}: base URL {url:?} is not http(s)")]
    BadUrl { name: String, url: String },
    /// Keys would travel in clear text, or the URL carries credentials of its own.
    #[error("provider {name:?}: base URL {url:?} {reason}")]
    InsecureUrl {
        name: String,
        url: String,
        reason: &'static str,
    },
    #[error("provider {name:?}: {field} must be a positive number")]
    NotPositive { name: String, field: &'static str },
    #[error("two providers are named {0:?}")]
    Duplicate(String),
    #[error("{field} must be a positive number")]
    BadPolicy { field: &'static str },
}

/// A provider URL the router will send keys to: https, or http to this machine only (a local
/// llama.cpp server or Ollama), and no `user:password@`.
fn check_url(name: &str, url: &str) -> Result<(), ConfigError> {
    let insecure = |reason| ConfigError::InsecureUrl {
        name: name.into(),
        url: url.into(),
        reason,
    };
    let lower = url.to_ascii_lowercase();
    let (https, rest) = match (
        lower.strip_prefix("https://"),
        lower.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => {
            return Err(ConfigError::BadUrl {
                name: name.into(),
                url: url.into(),
            })
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(insecure("carries credentials; give keys in `keys`"));
    }
    if authority.is_empty() {
        return Err(ConfigError::BadUrl {
            name: name.into(),
            url: url.into(),
        });
    }
    if !https && !is_loopback(authority) {
        return Err(insecure(
            "is http and not this machine: keys and prompts would travel in clear text",
        ));
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`) names this machine.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    if host == "localhost" || host.ends_with(".localhost") || host == "::1" {
        return true;
    }
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// What a key is replaced with in texts that leave the router.
pub const REDACTED: &str = "[redacted key]";

impl RouterConfig {
    /// What decides which model answers a request: each provider's name and model mapping
    /// (not its URL, keys or policies), so answers cached under one configuration are not
    /// served under another that would ask other models.
    pub fn fingerprint(&self) -> String {
        let mut models: Vec<(&str, &BTreeMap<String, String>)> = self
            .providers
            .iter()
            .map(|p| (p.name.as_str(), &p.models))
            .collect();
        models.sort();
        serde_json::to_string(&models).unwrap_or_default()
    }

    /// `text` with every configured key replaced by [`REDACTED`]: provider error texts go on to
    /// the app, and some providers and proxies echo the key they were sent.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for key in self.providers.iter().flat_map(|p| &p.keys) {
            // Shorter "keys" are placeholders; replacing them would garble the text.
            if key.key.len() >= 4 && out.contains(key.key.as_str()) {
                out = out.replace(key.key.as_str(), REDACTED);
            }
        }
        out
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() && self.mode == Mode::RemoteOnly {
            return Err(ConfigError::NoProviders(self.mode));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        for (field, v) in [
            ("retry.baseMs", self.retry.base_ms),
            ("retry.capMs", self.retry.cap_ms),
            ("breaker.openMs", self.breaker.open_ms),
        ] {
            if !positive(v) {
                return Err(ConfigError::BadPolicy { field });
            }
        }
        if self.breaker.failures == 0 {
            return Err(ConfigError::BadPolicy {
                field: "breaker.failures",
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for (index, p) in self.providers.iter().enumerate() {
            if p.name.trim().is_empty() {
                return Err(ConfigError::Unnamed { index });
            }
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::Duplicate(p.name.clone()));
            }
            check_url(&p.name, &p.base_url)?;
            let d = &p.deadlines;
            for (field, v) in [
                ("rate.requestsPerS", p.rate.requests_per_s),
                ("rate.burst", p.rate.burst),
                ("deadlines.connectMs", d.connect_ms),
                ("deadlines.firstByteMs", d.first_byte_ms),
                ("deadlines.stallMs", d.stall_ms),
            ] {
                if !positive(v) {
                    return Err(ConfigError::NotPositive {
                        name: p.name.clone(),
                        field,
                    });
                }
            }
            if p.rate.max_concurrent == 0 {
                return Err(ConfigError::NotPositive {
                    name: p.name.clone(),
                    field: "rate.maxConcurrent",
                });
            }
        }
        Ok(())
    }
}
