//! Identical requests in flight at once are answered once: the first goes out, the others wait
//! for its answer. Only deterministic requests (temperature 0, or a seed) qualify: two samples
//! at temperature 1 are meant to differ.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The key identical requests share, or None when the request is not deterministic.
pub fn key(body: &Value) -> Option<String> {
    let deterministic = body.get("temperature").and_then(Value::as_f64) == Some(0.0) || body.get("seed").is_some_and(|s| !s.is_null());
    if !deterministic {
        return None;
    }
    // serde_json's maps are ordered by key, so equal bodies serialize equally.
    let canonical = serde_json::to_string(body).ok()?;
    Some(crate::download::hex(&Sha256::digest(canonical.as_bytes())))
}

/// Whether a request goes out itself or waits on an identical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// The n-th request waiting on the leader.
    Follower(usize),
}

#[derive(Debug, Default)]
pub struct Coalescer {
    waiting: HashMap<String, usize>,
}

impl Coalescer {
    pub fn join(&mut self, key: &str) -> Role {
        match self.waiting.get_mut(key) {
            Some(n) => {
                *n += 1;
                Role::Follower(*n)
            }
            None => {
                self.waiting.insert(key.to_string(), 0);
                Role::Leader
            }
        }
    }

    /// The leader's answer is in: how many followers take it.
    pub fn finish(&mut self, key: &str) -> usize {
        self.waiting.remove(key).unwrap_or(0)
    }

    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}
