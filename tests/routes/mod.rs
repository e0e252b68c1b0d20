//! What the native router tests run the router on: a virtual clock with a small executor that
//! moves it on when every task waits (backoff, Retry-After and deadlines cost no real time);
//! providers that answer as DeepSeek's API does and fail on command, exactly as
//! scripts/provider.mjs does for the browser tests (same bodies, same faults, a chunk every
//! 5 ms); a local route that is a real model in this thread or a page that can go silent; and a
//! client that records what reached it.
#![allow(dead_code)]

mod provider;
mod sim;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use candlelight::openai::sse::{SseDecoder, SseEvent};
use candlelight::openai::SharedModel;
use candlelight::router::{
    AnswerStorage, ApiKey, Client, Deadlines, EngineReply, Entry, Head, Outgoing, Piece,
    ProviderConfig, Reply, Route, SendError, Start, Transport,
};
use serde_json::{json, Value};

use provider::Scripted;
// Each test file takes what it needs of these.
#[allow(unused_imports)]
pub use provider::{Fault, Provider};
#[allow(unused_imports)]
pub use sim::{Sim, Task};

/// The browser tests' deadlines: short, so faults show quickly.
pub const FAST: Deadlines = Deadlines {
    connect_ms: 2000.0,
    first_byte_ms: 800.0,
    stall_ms: 400.0,
};

pub fn api_keys(keys: &[&str]) -> Vec<ApiKey> {
    keys.iter()
        .map(|k| ApiKey {
            key: k.to_string(),
            created_ms: None,
        })
        .collect()
}

/// `p` in a router configuration, with these keys and retries and the short deadlines.
pub fn provider_config(p: &Provider, keys: &[&str], max_retries: u32) -> ProviderConfig {
    ProviderConfig {
        name: p.name.clone(),
        base_url: p.base_url.clone(),
        keys: api_keys(keys),
        max_retries,
        deadlines: FAST,
        ..ProviderConfig::default()
    }
}

/// A streamed request with usage, with `over`'s fields set.
pub fn ask(over: Value) -> String {
    let mut body = json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "count"}],
        "stream": true, "stream_options": {"include_usage": true}});
    for (k, v) in over.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

/// What the local route is.
pub enum LocalRoute {
    None,
    /// A model in this thread (the engine a service worker hosts).
    Engine(Rc<SharedModel>),
    /// A page's engine, scripted like a provider.
    Page(Rc<Provider>),
}

/// The routes of one test.
pub struct Routes {
    pub sim: Rc<Sim>,
    pub providers: Vec<Rc<Provider>>,
    pub local: LocalRoute,
    /// Base URLs that refuse connections.
    pub refused: Vec<String>,
    /// Local answers started.
    pub local_answers: Cell<usize>,
}

pub enum FakeReply {
    Scripted(Scripted, Rc<Sim>),
    Engine(EngineReply),
}

impl Reply for FakeReply {
    fn head(&self) -> &Head {
        match self {
            FakeReply::Scripted(s, _) => s.head.as_ref().expect("a reply with a head"),
            FakeReply::Engine(e) => e.head(),
        }
    }

    async fn next(&mut self, within_ms: f64) -> Piece {
        match self {
            FakeReply::Engine(e) => e.next(within_ms).await,
            FakeReply::Scripted(s, sim) => {
                let Some((delay, piece)) = s.pieces.pop_front() else {
                    return Piece::End;
                };
                if delay > within_ms {
                    sim.sleep(within_ms).await;
                    s.pieces.push_front((f64::INFINITY, piece));
                    return Piece::Stalled;
                }
                sim.sleep(delay).await;
                piece
            }
        }
    }

    fn cancel(&mut self) {
        match self {
            FakeReply::Scripted(s, _) => {
                if !s.pieces.is_empty() {
                    s.cancelled.set(s.cancelled.get() + 1);
                    s.pieces.clear();
                }
            }
            FakeReply::Engine(e) => e.cancel(),
        }
    }
}

impl Transport for Routes {
    type Reply = FakeReply;

    async fn send(&self, out: Outgoing<'_>, within_ms: f64) -> Result<FakeReply, SendError> {
        let now = self.sim.now();
        let scripted = match out.route {
            Route::Remote(_) => {
                let url = out.url.clone().unwrap_or_default();
                if self.refused.iter().any(|r| url.starts_with(r.as_str())) {
                    return Err(SendError::Refused);
                }
                let p = self
                    .providers
                    .iter()
                    .find(|p| url == format!("{}/chat/completions", p.base_url))
                    .unwrap_or_else(|| panic!("no provider at {url}"));
                p.answer(out.body, out.api_key, now)
            }
            Route::Local => {
                self.local_answers.set(self.local_answers.get() + 1);
                match &self.local {
                    LocalRoute::None => return Err(SendError::Unsendable),
                    LocalRoute::Page(p) => p.answer(out.body, None, now),
                    LocalRoute::Engine(model) => {
                        let id = format!("chatcmpl-local-{}", self.local_answers.get());
                        let reply = EngineReply::start(model, out.body, id, 1_700_000_000).await;
                        return Ok(FakeReply::Engine(reply));
                    }
                }
            }
        };
        if scripted.head.is_none() {
            self.sim.sleep(within_ms).await;
            return Err(SendError::NoFirstByte);
        }
        Ok(FakeReply::Scripted(scripted, self.sim.clone()))
    }

    async fn sleep(&self, ms: f64) {
        self.sim.sleep(ms).await;
    }

    fn now(&self) -> f64 {
        self.sim.now()
    }

    fn random(&self) -> f64 {
        0.5
    }
}

/// The app's end: what reached it.
#[derive(Default)]
pub struct Recorder {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub closed: bool,
    /// Goes away after this many writes.
    pub leave_after: Option<usize>,
    pub writes: usize,
}

impl Client for Recorder {
    fn start(&mut self, start: &Start) {
        assert!(self.status.is_none(), "the answer started twice");
        self.status = Some(start.status);
        self.headers = start
            .headers()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    }

    fn write(&mut self, text: &str) {
        assert!(self.status.is_some(), "a write before the start");
        assert!(!self.closed, "a write after the close");
        self.text.push_str(text);
        self.writes += 1;
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn gone(&self) -> bool {
        self.leave_after.is_some_and(|n| self.writes >= n)
    }
}

impl Recorder {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn route(&self) -> &str {
        self.header("x-candlelight-route").unwrap_or("")
    }

    /// The stream's events: chunks, and whether `[DONE]` ended it.
    pub fn events(&self) -> (Vec<Value>, bool) {
        let mut d = SseDecoder::default();
        let mut events = d.push(self.text.as_bytes()).unwrap();
        events.extend(d.finish().unwrap());
        let done = events.last() == Some(&SseEvent::Done);
        let chunks = events
            .into_iter()
            .filter_map(|e| match e {
                SseEvent::Data(t) => Some(serde_json::from_str(&t).unwrap()),
                SseEvent::Done => None,
            })
            .collect();
        (chunks, done)
    }

    /// The streamed text.
    pub fn content(&self) -> String {
        self.events()
            .0
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap()
    }
}

/// `n` words as the providers send them.
pub fn words(n: usize) -> String {
    (0..n).map(|i| format!("w{i} ")).collect()
}

/// The answer cache's storage, in memory (IndexedDB in the browser), counting its writes.
#[derive(Default)]
pub struct MemoryAnswers {
    pub entries: RefCell<Vec<Entry>>,
    pub texts: RefCell<std::collections::HashMap<String, String>>,
    pub commits: Cell<usize>,
    /// The next commit fails (quota), changing nothing, as an aborted transaction does.
    pub fail_next: Cell<bool>,
}

impl AnswerStorage for MemoryAnswers {
    async fn entries(&self) -> Result<Vec<Entry>, String> {
        Ok(self.entries.borrow().clone())
    }

    async fn text(&self, key: &str) -> Option<String> {
        self.texts.borrow().get(key).cloned()
    }

    async fn commit(
        &self,
        puts: &[(Entry, Option<String>)],
        deletes: &[String],
    ) -> Result<(), String> {
        self.commits.set(self.commits.get() + 1);
        if self.fail_next.replace(false) {
            return Err("QuotaExceededError".into());
        }
        let mut entries = self.entries.borrow_mut();
        let mut texts = self.texts.borrow_mut();
        for k in deletes {
            entries.retain(|e| &e.key != k);
            texts.remove(k);
        }
        for (e, text) in puts {
            entries.retain(|x| x.key != e.key);
            entries.push(e.clone());
            if let Some(t) = text {
                texts.insert(e.key.clone(), t.clone());
            }
        }
        Ok(())
    }
}
