//! Identical requests in flight at once are answered once: the first goes out, the others wait
//! for its answer. Only deterministic requests (temperature 0, or a seed) qualify: two samples
//! at temperature 1 are meant to differ.

use std::collections::HashMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::oneshot::{Receiver, Sender};

/// Fields that change how an answer is delivered, not what it says.
const DELIVERY: [&str; 3] = ["stream", "stream_options", "user"];

/// The key identical requests share (in flight here, cached in [`super::cache`]), or None when
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
    let mut text = String::new();
    write_sorted(&Value::Object(canonical), &mut text);
    Some(crate::hex::encode(&Sha256::digest(text.as_bytes())))
}

/// `value` as JSON with every object's keys sorted, so equal bodies give equal text whatever
/// order their fields came in (maps keep the order they were given).
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_sorted(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// What a leader hands its followers: the route that answered and the whole answer, or None
/// when it got no whole answer (they go out themselves then).
pub type Shared = Option<(String, Value)>;

/// Whether a request goes out itself or waits on an identical one.
pub enum Role {
    Leader,
    Follower(Follow),
}

/// A follower waiting for its leader: resolves to the leader's answer.
pub type Follow = Receiver<Shared>;

/// Deterministic requests in flight, by key, with who waits on each.
#[derive(Default)]
pub struct Coalescer {
    waiting: HashMap<String, Vec<Sender<Shared>>>,
}

impl Coalescer {
    pub fn join(&mut self, key: &str) -> Role {
        match self.waiting.get_mut(key) {
            Some(followers) => {
                let (tx, rx) = crate::oneshot::channel();
                followers.push(tx);
                Role::Follower(rx)
            }
            None => {
                self.waiting.insert(key.to_string(), Vec::new());
                Role::Leader
            }
        }
    }

    /// The leader is done with `answer`: every follower gets it. Returns how many there were.
    pub fn finish(&mut self, key: &str, answer: Shared) -> usize {
        let followers = self.waiting.remove(key).unwrap_or_default();
        let n = followers.len();
        for follower in followers {
            follower.send(answer.clone());
        }
        n
    }

    /// Keys in flight.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}
