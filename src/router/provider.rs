//! Per-provider state: a circuit breaker, a token bucket with a cap on requests in flight, and
//! the key ring. All of it takes the time as an argument, so the policy is testable to the ms.

use super::busy::Refusal;
use super::config::{ApiKey, BreakerPolicy, ProviderConfig, RateLimit};

/// What the router knows of one provider now.
pub(super) struct Provider {
    pub breaker: Breaker,
    pub limiter: Limiter,
    pub keys: KeyRing,
}

impl Provider {
    pub fn new(config: &ProviderConfig, now_ms: f64) -> Self {
        Self {
            breaker: Breaker::new(),
            limiter: Limiter::new(config.rate, now_ms),
            keys: KeyRing::new(config.keys.clone()),
        }
    }
}

/// Closed lets requests through; enough failures in a row open it for a while; then one probe
/// (half-open) decides whether it closes again or reopens.
#[derive(Debug, Clone, PartialEq)]
pub enum Breaker {
    Closed { failures: u32 },
    Open { until_ms: f64 },
    HalfOpen { probing: bool },
}

/// Whether a request may go to the provider now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Allowed,
    /// Allowed as the half-open probe: its outcome closes or reopens the circuit.
    Probe,
    /// Not now; worth asking again after this long.
    Rejected {
        retry_in_ms: f64,
    },
}

impl Breaker {
    pub fn new() -> Self {
        Breaker::Closed { failures: 0 }
    }

    pub fn admit(&mut self, now_ms: f64) -> Admission {
        match *self {
            Breaker::Closed { .. } => Admission::Allowed,
            Breaker::Open { until_ms } if now_ms < until_ms => Admission::Rejected {
                retry_in_ms: until_ms - now_ms,
            },
            Breaker::Open { .. } | Breaker::HalfOpen { probing: false } => {
                *self = Breaker::HalfOpen { probing: true };
                Admission::Probe
            }
            // One probe at a time; a short wait, since it answers soon.
            Breaker::HalfOpen { probing: true } => Admission::Rejected {
                retry_in_ms: 1000.0,
            },
        }
    }

    pub fn success(&mut self) {
        *self = Breaker::Closed { failures: 0 };
    }

    pub fn failure(&mut self, now_ms: f64, policy: &BreakerPolicy) {
        *self = match *self {
            Breaker::Closed { failures } if failures + 1 < policy.failures => Breaker::Closed {
                failures: failures + 1,
            },
            _ => Breaker::Open {
                until_ms: now_ms + policy.open_ms,
            },
        };
    }

    /// The probe never reported (the page closed): let the next request probe instead.
    pub fn abandon_probe(&mut self) {
        if *self == (Breaker::HalfOpen { probing: true }) {
            *self = Breaker::HalfOpen { probing: false };
        }
    }

    pub fn is_open(&self, now_ms: f64) -> bool {
        matches!(*self, Breaker::Open { until_ms } if now_ms < until_ms)
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new()
    }
}

/// A token bucket of `burst` requests refilled at `requests_per_s`, and at most
/// `max_concurrent` requests in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Limiter {
    rate: RateLimit,
    tokens: f64,
    last_ms: f64,
    in_flight: u32,
}

impl Limiter {
    pub fn new(rate: RateLimit, now_ms: f64) -> Self {
        Self {
            rate,
            tokens: rate.burst,
            last_ms: now_ms,
            in_flight: 0,
        }
    }

    /// Takes a token and a slot, or says how long until one would be free (None: when a
    /// request in flight ends).
    pub fn acquire(&mut self, now_ms: f64) -> Result<(), Option<f64>> {
        let elapsed = (now_ms - self.last_ms).max(0.0) / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate.requests_per_s).min(self.rate.burst);
        self.last_ms = now_ms.max(self.last_ms);
        if self.in_flight >= self.rate.max_concurrent {
            return Err(None);
        }
        if self.tokens < 1.0 {
            return Err(Some(
                (1.0 - self.tokens) / self.rate.requests_per_s * 1000.0,
            ));
        }
        self.tokens -= 1.0;
        self.in_flight += 1;
        Ok(())
    }

    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Gives back what `acquire` took, for a request that never went out.
    pub fn refund(&mut self) {
        self.release();
        self.tokens = (self.tokens + 1.0).min(self.rate.burst);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }
}

/// The provider's keys in order; a refused key is set aside and the next takes over.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRing {
    keys: Vec<ApiKey>,
    /// Per key: set aside until this time (401 for good, 403 for a cool-down, quota for an
    /// hour).
    benched_until: Vec<f64>,
    current: usize,
}

/// How long a key out of quota sits out.
const QUOTA_BENCH_MS: f64 = 3_600_000.0;

/// How long a key refused with 403 sits out: a region or permission refusal may lift, and a
/// key set aside for good would stay dead until the app reconfigures.
pub const FORBIDDEN_BENCH_MS: f64 = 600_000.0;

impl KeyRing {
    pub fn new(keys: Vec<ApiKey>) -> Self {
        let n = keys.len();
        Self {
            keys,
            benched_until: vec![f64::NEG_INFINITY; n],
            current: 0,
        }
    }

    /// The index of the key to use now; None when every key is set aside (or there are none
    /// and the provider needs none: see [`KeyRing::needs_key`]).
    pub fn current(&mut self, now_ms: f64) -> Option<usize> {
        let i = self.next_usable(now_ms)?;
        self.current = i;
        Some(i)
    }

    fn next_usable(&self, now_ms: f64) -> Option<usize> {
        let n = self.keys.len();
        (0..n)
            .map(|k| (self.current + k) % n)
            .find(|&i| self.benched_until[i] <= now_ms)
    }

    /// A key can be used now, or the provider needs none.
    pub fn usable(&self, now_ms: f64) -> bool {
        !self.needs_key() || self.next_usable(now_ms).is_some()
    }

    pub fn get(&self, index: usize) -> Option<&ApiKey> {
        self.keys.get(index)
    }

    pub fn needs_key(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Key `index` was refused, and sits out for as long as `why` says.
    pub fn reject(&mut self, index: usize, why: Refusal, now_ms: f64) {
        if let Some(b) = self.benched_until.get_mut(index) {
            *b = match why {
                Refusal::Invalid => f64::INFINITY,
                Refusal::Forbidden => now_ms + FORBIDDEN_BENCH_MS,
                Refusal::Quota => now_ms + QUOTA_BENCH_MS,
            };
        }
        if !self.keys.is_empty() {
            self.current = (index + 1) % self.keys.len();
        }
    }

    /// Indexes of keys older than `max_age_days`.
    pub fn stale(&self, now_ms: f64, max_age_days: f64) -> Vec<usize> {
        let limit = max_age_days * 86_400_000.0;
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.created_ms.is_some_and(|c| now_ms - c > limit))
            .map(|(i, _)| i)
            .collect()
    }
}
