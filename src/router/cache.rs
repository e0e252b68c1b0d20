//! The answer cache, the last resort for deterministic requests (temperature 0, or a seed):
//! their answers are cached (in IndexedDB in the service worker), least recently used first out
//! past a byte cap, and served when every route fails. Here: which requests qualify and under
//! what key, the answer cached (a whole `chat.completion`, whichever way it came), how it is
//! replayed as a stream, the LRU bookkeeping, and the cache over any storage.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::openai::sse;

/// Requests are cached under the key identical requests share in flight.
pub use super::coalesce::key;

/// One cached answer's bookkeeping: its key, its size as stored, and when it was last served.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub bytes: u64,
    pub used: f64,
}

/// Where cached answers live (IndexedDB in the browser): texts by key, and beside them the
/// entries, which are all that is read when the cache opens.
#[allow(async_fn_in_trait)]
pub trait AnswerStorage {
    async fn entries(&self) -> Result<Vec<Entry>, String>;
    async fn text(&self, key: &str) -> Option<String>;
    /// In one transaction: each entry stored (with its text, when given), each key deleted.
    async fn commit(
        &self,
        puts: &[(Entry, Option<String>)],
        deletes: &[String],
    ) -> Result<(), String>;
}

impl<S: AnswerStorage> AnswerStorage for std::rc::Rc<S> {
    async fn entries(&self) -> Result<Vec<Entry>, String> {
        (**self).entries().await
    }

    async fn text(&self, key: &str) -> Option<String> {
        (**self).text(key).await
    }

    async fn commit(
        &self,
        puts: &[(Entry, Option<String>)],
        deletes: &[String],
    ) -> Result<(), String> {
        (**self).commit(puts, deletes).await
    }
}

/// Answers cached in `S`, under a byte cap.
pub struct AnswerCache<S> {
    storage: S,
    lru: RefCell<Lru>,
}

impl<S: AnswerStorage> AnswerCache<S> {
    /// Reads what `storage` holds; a cap lowered since it was written applies at once.
    pub async fn open(storage: S, cap: u64) -> Result<Self, String> {
        let mut lru = Lru::new(cap);
        for e in storage.entries().await? {
            lru.restore(e.key, e.bytes, e.used);
        }
        let over = lru.fit();
        if !over.is_empty() {
            storage.commit(&[], &over).await?;
        }
        Ok(Self {
            storage,
            lru: RefCell::new(lru),
        })
    }

    /// The answer cached under `key`, now the most recently used.
    pub async fn get(&self, key: &str, now: f64) -> Option<Value> {
        if !self.lru.borrow().contains(key) {
            return None;
        }
        let text = self.storage.text(key).await?;
        self.lru.borrow_mut().touch(key, now);
        let entry = Entry {
            key: key.to_string(),
            bytes: text.len() as u64,
            used: now,
        };
        let _ = self.storage.commit(&[(entry, None)], &[]).await;
        serde_json::from_str(&text).ok()
    }

    /// Caches `answer` under `key`; returns how many older answers made room for it. When the
    /// write fails, storage is as it was, and so is the bookkeeping of this answer and of those
    /// it would have pushed out.
    pub async fn put(&self, key: &str, answer: &Value, now: f64) -> Result<usize, String> {
        let text = answer.to_string();
        let before = self.lru.borrow().clone();
        let evicted = self
            .lru
            .borrow_mut()
            .insert(key.to_string(), text.len() as u64, now);
        let mut puts = Vec::new();
        if self.lru.borrow().contains(key) {
            let entry = Entry {
                key: key.to_string(),
                bytes: text.len() as u64,
                used: now,
            };
            puts.push((entry, Some(text)));
        }
        if let Err(e) = self.storage.commit(&puts, &evicted).await {
            // Undo this put only: other puts may have landed while this one waited.
            let mut lru = self.lru.borrow_mut();
            lru.remove(key);
            for k in std::iter::once(key).chain(evicted.iter().map(String::as_str)) {
                if let Some(&(bytes, used)) = before.entries.get(k) {
                    lru.restore(k.to_string(), bytes, used);
                }
            }
            return Err(e);
        }
        Ok(evicted.iter().filter(|k| k.as_str() != key).count())
    }
}

/// A cached answer replayed for `request`: the `chat.completion` as it is, or as a stream of
/// chunks (role, reasoning, content, finish, then usage when the request asks for it).
pub fn replay(completion: &Value, request: &Value) -> String {
    if request.get("stream").and_then(Value::as_bool) != Some(true) {
        return completion.to_string();
    }
    let head = |choices: Value| {
        json!({
            "id": completion["id"], "object": "chat.completion.chunk", "created": completion["created"],
            "model": completion["model"], "choices": choices,
        })
    };
    let message = &completion["choices"][0]["message"];
    let mut out = String::new();
    let mut send = |v: Value| out.push_str(&sse::encode(&v.to_string()));
    send(head(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
    ));
    for field in ["reasoning_content", "content"] {
        if let Some(text) = message
            .get(field)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            send(head(
                json!([{"index": 0, "delta": {field: text}, "finish_reason": null}]),
            ));
        }
    }
    // Each call whole in one piece, as it would open a stream: id, type, name, arguments.
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for (index, call) in calls.into_iter().flatten().enumerate() {
        let mut piece = call.clone();
        piece["index"] = index.into();
        send(head(
            json!([{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": null}]),
        ));
    }
    send(head(
        json!([{"index": 0, "delta": {}, "finish_reason": completion["choices"][0]["finish_reason"]}]),
    ));
    let wants_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if wants_usage && completion["usage"].is_object() {
        let mut last = head(json!([]));
        last["usage"] = completion["usage"].clone();
        send(last);
    }
    out.push_str(sse::DONE);
    out
}

/// Which cached answers go first when the cap is reached: byte sizes and last use, in memory (the
/// bodies stay in storage).
#[derive(Debug, Clone, Default)]
pub struct Lru {
    cap: u64,
    total: u64,
    entries: HashMap<String, (u64, f64)>,
}

impl Lru {
    pub fn new(cap: u64) -> Self {
        Self {
            cap,
            ..Self::default()
        }
    }

    /// An entry found in storage at start.
    pub fn restore(&mut self, key: String, bytes: u64, used: f64) {
        if let Some((old, _)) = self.entries.insert(key, (bytes, used)) {
            self.total -= old;
        }
        self.total += bytes;
    }

    /// Keeps `key` (`bytes` long, used at `now`); returns the keys to delete to stay under the
    /// cap, the new key itself when it alone is over the cap.
    pub fn insert(&mut self, key: String, bytes: u64, now: f64) -> Vec<String> {
        if bytes > self.cap {
            return if self.remove(&key) { vec![key] } else { vec![] };
        }
        self.restore(key.clone(), bytes, now);
        self.evict(Some(&key))
    }

    /// Drops the least recently used until the cached bytes fit the cap (a cap lowered since
    /// they were cached); returns their keys.
    pub fn fit(&mut self) -> Vec<String> {
        self.evict(None)
    }

    fn evict(&mut self, keep: Option<&str>) -> Vec<String> {
        let mut by_age: Vec<(f64, String)> = self
            .entries
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != keep)
            .map(|(k, (_, used))| (*used, k.clone()))
            .collect();
        by_age.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let mut evicted = Vec::new();
        for (_, old) in by_age {
            if self.total <= self.cap {
                break;
            }
            self.remove(&old);
            evicted.push(old);
        }
        evicted
    }

    /// `key` was served at `now`; false when it is not cached.
    pub fn touch(&mut self, key: &str, now: f64) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) => {
                entry.1 = now;
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some((bytes, _)) => {
                self.total -= bytes;
                true
            }
            None => false,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn bytes(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
