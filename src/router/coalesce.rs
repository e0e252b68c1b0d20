//! Identical requests in flight at once are answered once: the first goes out, the others wait
//! for its answer. Only deterministic requests (temperature 0, or a seed) qualify: two samples
//! at temperature 1 are meant to differ.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Fields that change how an answer is delivered, not what it says.
const DELIVERY: [&str; 3] = ["stream", "stream_options", "user"];

/// The key identical requests share (in flight here, kept in [`super::cache`]), or None when
/// the request is not deterministic. A streamed and a whole request for the same answer share
/// it: either can be replayed as the other.
pub fn key(body: &Value) -> Option<String> {
    let object = body.as_object()?;
    let deterministic = object.get("temperature").and_then(Value::as_f64) == Some(0.0)
        || object.get("seed").is_some_and(|s| !s.is_null());
    if !deterministic {
        return None;
    }
    let mut canonical = object.clone();
    for field in DELIVERY {
        canonical.remove(field);
    }
    // serde_json's maps are ordered by key, so equal bodies serialize equally.
    Some(crate::hex::encode(&Sha256::digest(
        Value::Object(canonical).to_string().as_bytes(),
    )))
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
