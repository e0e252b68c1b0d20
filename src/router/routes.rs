//! The router's decisions: the order of routes for a mode, which route takes a request now
//! (breaker, rate limit, keys), what to do after each try (retry with backoff, next key, fail
//! over, or hand the client its own error), the health level, and the answer when nothing can.

use serde_json::{json, Value};

use super::busy::Verdict;
use super::config::{ConfigError, Mode, RouterConfig};
use super::provider::{Admission, Breaker, Provider};
use crate::retry::backoff_ms;

/// Where a request can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local,
    /// A provider, by its index in the configuration.
    Remote(usize),
}

/// What the router knows of the local model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Local {
    /// A model is loaded (or can be loaded without the network).
    pub ready: bool,
    /// The device profile says it is fast enough (see [`super::profile::assess`]).
    pub capable: bool,
}

/// A route granted to one try; hand it back to [`Router::report`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    pub route: Route,
    /// The key to send, by index in the provider's keys (None: local, or a provider without keys).
    pub key: Option<usize>,
    /// This try is the half-open probe of the provider's breaker.
    pub probe: bool,
}

/// The router's answer to "where now?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Go(Ticket),
    /// A route will admit a request after this long (rate limit, a probe in flight).
    Wait {
        ms: f64,
    },
    /// No route can answer: the 503 with this Retry-After.
    Unavailable {
        retry_after_ms: f64,
    },
}

/// What to do after a try.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Done,
    /// The same provider again after this long (the next key when one was refused).
    Retry {
        after_ms: f64,
    },
    /// On to the next route.
    FailOver,
    /// Pass the provider's error to the client: another route would answer the same.
    Answer,
}

/// How the app is served, for its health events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    /// Some routes are out; two or more still answer.
    Degraded,
    /// One route left.
    Critical,
    /// None.
    Down,
}

impl Health {
    /// As the service worker announces it to pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Critical => "critical",
            Health::Down => "down",
        }
    }
}

/// Retry-After when nothing can answer and no breaker says when it reopens.
const DEFAULT_RETRY_AFTER_MS: f64 = 30_000.0;

pub struct Router {
    config: RouterConfig,
    providers: Vec<Provider>,
    local: Local,
}

impl Router {
    pub fn new(config: RouterConfig, now_ms: f64) -> Result<Self, ConfigError> {
        config.validate()?;
        let providers = config
            .providers
            .iter()
            .map(|p| Provider::new(p, now_ms))
            .collect();
        Ok(Self {
            config,
            providers,
            local: Local::default(),
        })
    }

    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    pub fn set_local(&mut self, local: Local) {
        self.local = local;
    }

    /// Every route this mode allows, in the order a request tries them.
    pub fn order(&self) -> Vec<Route> {
        let remotes = (0..self.providers.len()).map(Route::Remote);
        let local = self.local.ready.then_some(Route::Local);
        match self.config.mode {
            Mode::LocalOnly => local.into_iter().collect(),
            Mode::RemoteOnly => remotes.collect(),
            Mode::LocalFirst => local.into_iter().chain(remotes).collect(),
            Mode::RemoteFirst => remotes.chain(local).collect(),
            Mode::Auto if self.local.capable => local.into_iter().chain(remotes).collect(),
            // Too weak: remotes first, the slow local model only when they are all busy.
            Mode::Auto => remotes.chain(local).collect(),
        }
    }

    /// The first route in order, not in `tried`, that takes a request now.
    pub fn choose(&mut self, now_ms: f64, tried: &[Route]) -> Decision {
        let mut wait: Option<f64> = None;
        let mut reopen: Option<f64> = None;
        for route in self.order() {
            if tried.contains(&route) {
                continue;
            }
            let Route::Remote(i) = route else {
                return Decision::Go(Ticket {
                    route,
                    key: None,
                    probe: false,
                });
            };
            let p = &mut self.providers[i];
            if !p.keys.usable(now_ms) {
                continue;
            }
            let key = p.keys.current(now_ms);
            if let Breaker::Open { until_ms } = p.breaker {
                if now_ms < until_ms {
                    reopen =
                        Some(reopen.map_or(until_ms - now_ms, |r: f64| r.min(until_ms - now_ms)));
                    continue;
                }
            }
            // Rate before the breaker: a request the limiter holds back must not take the probe.
            match p.limiter.acquire(now_ms) {
                Ok(()) => {}
                Err(Some(ms)) => {
                    wait = Some(wait.map_or(ms, |w: f64| w.min(ms)));
                    continue;
                }
                Err(None) => continue,
            }
            match p.breaker.admit(now_ms) {
                Admission::Allowed => {
                    return Decision::Go(Ticket {
                        route,
                        key,
                        probe: false,
                    })
                }
                Admission::Probe => {
                    return Decision::Go(Ticket {
                        route,
                        key,
                        probe: true,
                    })
                }
                Admission::Rejected { retry_in_ms } => {
                    p.limiter.refund();
                    wait = Some(wait.map_or(retry_in_ms, |w: f64| w.min(retry_in_ms)));
                }
            }
        }
        match wait {
            // At least a millisecond: a bucket a hair short of a token asks for a wait of
            // 1e-13 ms, which a clock at Unix-epoch milliseconds cannot even represent, and the
            // caller would spin without time passing.
            Some(ms) => Decision::Wait { ms: ms.max(1.0) },
            None => Decision::Unavailable {
                retry_after_ms: reopen.unwrap_or(DEFAULT_RETRY_AFTER_MS),
            },
        }
    }

    /// Records how a try went and says what to do next. `retries` counts the tries already
    /// repeated on this provider for this request; `unit` is a uniform random number for jitter.
    pub fn report(
        &mut self,
        ticket: Ticket,
        verdict: Verdict,
        retries: u32,
        now_ms: f64,
        unit: f64,
    ) -> Next {
        let Route::Remote(i) = ticket.route else {
            return match verdict {
                Verdict::Ok => Next::Done,
                Verdict::ClientError => Next::Answer,
                // Unsupported too: a remote may do what the local model cannot.
                _ => Next::FailOver,
            };
        };
        let max_retries = self.config.providers[i].max_retries;
        let (retry, breaker) = (self.config.retry, self.config.breaker);
        let p = &mut self.providers[i];
        p.limiter.release();
        match verdict {
            Verdict::Ok => {
                p.breaker.success();
                Next::Done
            }
            Verdict::ClientError => {
                // The provider answered properly; the request was wrong.
                p.breaker.success();
                Next::Answer
            }
            Verdict::Unsupported => {
                p.breaker.success();
                Next::FailOver
            }
            Verdict::KeyRejected { why } => {
                if let Some(k) = ticket.key {
                    p.keys.reject(k, why, now_ms);
                }
                if ticket.probe {
                    p.breaker.abandon_probe();
                }
                match p.keys.usable(now_ms) {
                    true => Next::Retry { after_ms: 0.0 },
                    false => Next::FailOver,
                }
            }
            Verdict::Busy { retry_after_ms } => {
                p.breaker.failure(now_ms, &breaker);
                if retries >= max_retries || p.breaker.is_open(now_ms) {
                    return Next::FailOver;
                }
                let wait = retry_after_ms
                    .unwrap_or_else(|| backoff_ms(retries, retry.base_ms, retry.cap_ms, unit));
                if wait > retry.max_wait_ms {
                    Next::FailOver
                } else {
                    Next::Retry { after_ms: wait }
                }
            }
            Verdict::Failed => {
                p.breaker.failure(now_ms, &breaker);
                Next::FailOver
            }
        }
    }

    /// A try whose client went away before it ended: its slot is freed, its probe handed on,
    /// and nothing is counted for or against the route.
    pub fn abandon(&mut self, ticket: Ticket) {
        if let Route::Remote(i) = ticket.route {
            let p = &mut self.providers[i];
            p.limiter.release();
            if ticket.probe {
                p.breaker.abandon_probe();
            }
        }
    }

    /// How many routes could answer now, as a level.
    pub fn health(&self, now_ms: f64) -> Health {
        let order = self.order();
        let up = order
            .iter()
            .filter(|r| match r {
                Route::Local => true,
                Route::Remote(i) => {
                    let p = &self.providers[*i];
                    !p.breaker.is_open(now_ms) && p.keys.usable(now_ms)
                }
            })
            .count();
        let configured = order.len();
        match up {
            0 => Health::Down,
            1 if configured > 1 => Health::Critical,
            n if n < configured => Health::Degraded,
            _ => Health::Healthy,
        }
    }

    /// The API key a ticket carries.
    pub fn api_key(&self, ticket: &Ticket) -> Option<&str> {
        match (ticket.route, ticket.key) {
            (Route::Remote(i), Some(k)) => {
                self.providers.get(i)?.keys.get(k).map(|k| k.key.as_str())
            }
            _ => None,
        }
    }

    /// Provider keys older than the configured age: (provider name, key index).
    pub fn stale_keys(&self, now_ms: f64) -> Vec<(String, usize)> {
        let days = self.config.key_max_age_days;
        self.providers
            .iter()
            .zip(&self.config.providers)
            .flat_map(|(p, c)| {
                p.keys
                    .stale(now_ms, days)
                    .into_iter()
                    .map(|k| (c.name.clone(), k))
            })
            .collect()
    }
}

/// The answer when no route can: HTTP 503, an OpenAI-style error body, and Retry-After seconds.
pub fn unavailable(retry_after_ms: f64) -> (u16, Value, u64) {
    let seconds = (retry_after_ms / 1000.0).ceil().max(1.0) as u64;
    let body = json!({
        "error": {
            "message": format!("Every route is busy or unreachable (the local model and each provider). Please wait in the queue and retry in {seconds} s."),
            "type": "server_busy",
            "param": null,
            "code": "no_route_available",
        }
    });
    (503, body, seconds)
}

/// The request that continues a stream broken after `partial` text (`emitted` tokens): the
/// text so far as an assistant prefix (DeepSeek's `prefix`; other servers read it as the turn
/// so far), and what is left of the token budget.
pub fn continuation(body: &Value, partial: &str, emitted: u64) -> Value {
    let mut next = body.clone();
    if let Some(messages) = next.get_mut("messages").and_then(Value::as_array_mut) {
        messages.push(json!({ "role": "assistant", "content": partial, "prefix": true }));
    }
    for field in ["max_tokens", "max_completion_tokens"] {
        if let Some(n) = next.get(field).and_then(Value::as_u64) {
            next[field] = json!(n.saturating_sub(emitted).max(1));
        }
    }
    next
}

/// The model name to send to provider `index`.
pub fn provider_model<'a>(config: &'a RouterConfig, index: usize, model: &'a str) -> &'a str {
    config
        .providers
        .get(index)
        .and_then(|p| p.models.get(model))
        .map_or(model, String::as_str)
}
