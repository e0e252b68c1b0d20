//! What the native router tests run the router on: a virtual clock with a small executor that
//! moves it on when every task waits (backoff, Retry-After and deadlines cost no real time);
//! providers that answer as DeepSeek's API does and fail on command, exactly as
//! scripts/provider.mjs does for the browser tests (same bodies, same faults, a chunk every
//! 5 ms); a local route that is a real model in this thread or a page that can go silent; and a
//! client that records what reached it.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use candlelight::openai::sse::{SseDecoder, SseEvent};
use candlelight::openai::SharedModel;
use candlelight::router::{
    AnswerStorage, Client, EngineReply, Entry, Head, Outgoing, Piece, Reply, Route, SendError,
    Start, Transport,
};
use serde_json::{json, Value};

/// A virtual clock and the tasks that wait on it.
#[derive(Default)]
pub struct Sim {
    now: Cell<f64>,
    timers: RefCell<Vec<(f64, Waker)>>,
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

impl Sim {
    pub fn new() -> Rc<Sim> {
        let sim = Sim::default();
        sim.now.set(1_700_000_000_000.0);
        Rc::new(sim)
    }

    pub fn now(&self) -> f64 {
        self.now.get()
    }

    pub fn sleep(&self, ms: f64) -> Sleep<'_> {
        Sleep {
            sim: self,
            until: self.now() + ms.max(0.0),
        }
    }

    /// Runs `tasks` together to their ends; when every one waits and nothing woke, the clock
    /// jumps to the earliest timer.
    pub fn run<'a, T>(&self, mut tasks: Vec<Task<'a, T>>) -> Vec<T> {
        let flag = Arc::new(Flag(AtomicBool::new(true)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut out: Vec<Option<T>> = tasks.iter().map(|_| None).collect();
        loop {
            flag.0.store(false, Ordering::SeqCst);
            for (task, slot) in tasks.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    if let Poll::Ready(v) = task.as_mut().poll(&mut cx) {
                        *slot = Some(v);
                    }
                }
            }
            if out.iter().all(Option::is_some) {
                return out.into_iter().map(Option::unwrap).collect();
            }
            if flag.0.load(Ordering::SeqCst) {
                continue;
            }
            let mut timers = self.timers.borrow_mut();
            let next = timers.iter().map(|(t, _)| *t).fold(f64::INFINITY, f64::min);
            assert!(next.is_finite(), "every task waits and no timer is set");
            self.now.set(next.max(self.now()));
            let now = self.now();
            timers.retain(|(t, w)| {
                if *t <= now {
                    w.wake_by_ref();
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Runs one task.
    pub fn block_on<'a, T>(&self, task: impl Future<Output = T> + 'a) -> T {
        self.run(vec![Box::pin(task) as Task<'a, T>]).pop().unwrap()
    }
}

pub struct Sleep<'a> {
    sim: &'a Sim,
    until: f64,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sim.now() >= self.until {
            return Poll::Ready(());
        }
        self.sim
            .timers
            .borrow_mut()
            .push((self.until, cx.waker().clone()));
        Poll::Pending
    }
}

/// What a provider does with the next request, as scripts/provider.mjs names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// 401: the key is refused.
    Unauthorized,
    /// 402: DeepSeek's Insufficient Balance.
    NoBalance,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// 503 "Server busy, please try again later."
    Busy,
    /// 400: the request is wrong.
    BadRequest,
    /// Never answers.
    Hang,
    /// Streams this many words, then falls silent.
    Stall(usize),
    /// Streams this many words, then the connection drops.
    Cut(usize),
    /// Streams this many words, then half a JSON chunk, then ends.
    Malformed(usize),
    /// Streams this many words, then an error event.
    ErrorEvent(usize),
    /// Streams the whole answer but ends without `[DONE]`.
    NoDone,
}

/// A request a provider saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub body: Value,
    pub auth: Option<String>,
    pub fault: Option<Fault>,
    pub at: f64,
}

/// An OpenAI-compatible provider answering with the words `w0 w1 …`.
pub struct Provider {
    pub name: String,
    pub base_url: String,
    keys: Option<Vec<String>>,
    words: usize,
    faults: RefCell<VecDeque<Fault>>,
    pub log: RefCell<Vec<Seen>>,
    /// Requests cancelled by the router.
    pub cancelled: Rc<Cell<usize>>,
}

impl Provider {
    pub fn new(name: &str, keys: &[&str]) -> Rc<Provider> {
        Rc::new(Provider {
            name: name.into(),
            base_url: format!("https://{name}.example/v1"),
            keys: (!keys.is_empty()).then(|| keys.iter().map(|k| k.to_string()).collect()),
            words: 8,
            faults: RefCell::new(VecDeque::new()),
            log: RefCell::new(Vec::new()),
            cancelled: Rc::new(Cell::new(0)),
        })
    }

    /// Queues faults: each request takes the next one.
    pub fn faults(&self, faults: &[Fault]) {
        self.faults.borrow_mut().extend(faults.iter().copied());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.borrow().clone()
    }

    fn chunk(&self, id: &str, delta: Value, finish: Value) -> Value {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1700000000, "model": format!("{}-model", self.name),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]})
    }

    /// The reply to `body` sent with `auth`, as pieces with the time each one takes.
    fn answer(&self, body: &Value, auth: Option<&str>, now: f64) -> Scripted {
        let refused = self
            .keys
            .as_ref()
            .is_some_and(|k| !auth.is_some_and(|a| k.iter().any(|x| x == a)));
        let fault = match refused {
            true => None,
            false => self.faults.borrow_mut().pop_front(),
        };
        self.log.borrow_mut().push(Seen {
            body: body.clone(),
            auth: auth.map(str::to_string),
            fault,
            at: now,
        });
        let json_reply = |status: u16, body: Value, retry_after: Option<&str>| Scripted {
            head: Some(Head {
                status,
                retry_after: retry_after.map(str::to_string),
                event_stream: false,
            }),
            pieces: VecDeque::from([
                (0.0, Piece::Bytes(body.to_string().into_bytes())),
                (0.0, Piece::End),
            ]),
            cancelled: self.cancelled.clone(),
        };
        if refused || fault == Some(Fault::Unauthorized) {
            return json_reply(
                401,
                json!({"error": {"message": "Authentication Fails (no such user)", "type": "authentication_error", "code": "invalid_request_error"}}),
                None,
            );
        }
        match fault {
            Some(Fault::RateLimited) => {
                return json_reply(
                    429,
                    json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}),
                    Some("1"),
                )
            }
            Some(Fault::Busy) => {
                return json_reply(
                    503,
                    json!({"error": {"message": "Server busy, please try again later.", "type": "server_error"}}),
                    None,
                )
            }
            Some(Fault::NoBalance) => {
                return json_reply(
                    402,
                    json!({"error": {"message": "Insufficient Balance", "type": "unknown_error"}}),
                    None,
                )
            }
            Some(Fault::BadRequest) => {
                return json_reply(
                    400,
                    json!({"error": {"message": "messages must not be empty", "type": "invalid_request_error", "param": "messages"}}),
                    None,
                )
            }
            Some(Fault::Hang) => {
                return Scripted {
                    head: None,
                    pieces: VecDeque::new(),
                    cancelled: self.cancelled.clone(),
                }
            }
            _ => {}
        }
        // The answer: words continuing any assistant prefix the request carries.
        let last = body["messages"].as_array().and_then(|m| m.last());
        let prefix = match last {
            Some(m) if m["role"] == "assistant" && m["prefix"] == true => {
                m["content"].as_str().unwrap_or("")
            }
            _ => "",
        };
        let start = prefix.split(' ').filter(|w| !w.is_empty()).count();
        let budget = body["max_tokens"]
            .as_u64()
            .map_or(self.words, |n| n as usize)
            .min(self.words.saturating_sub(start));
        let pieces: Vec<String> = (start..start + budget).map(|i| format!("w{i} ")).collect();
        let usage = json!({"prompt_tokens": 10, "completion_tokens": pieces.len(), "total_tokens": 10 + pieces.len(), "prompt_cache_hit_tokens": 0});
        let id = format!("{}-{}", self.name, self.log.borrow().len());
        if body["stream"] != true {
            let whole = json!({"id": id, "object": "chat.completion", "created": 1700000000, "model": format!("{}-model", self.name),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": pieces.concat()}, "finish_reason": "stop"}], "usage": usage});
            return json_reply(200, whole, None);
        }
        let sse = |v: &Value| Piece::Bytes(format!("data: {v}\n\n").into_bytes());
        let mut out = VecDeque::new();
        out.push_back((
            0.0,
            sse(&self.chunk(
                &id,
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            )),
        ));
        for (i, word) in pieces.iter().enumerate() {
            match fault {
                Some(Fault::Stall(at)) if at == i => {
                    out.push_back((f64::INFINITY, Piece::End));
                    return self.stream(out);
                }
                Some(Fault::Cut(at)) if at == i => {
                    out.push_back((0.0, Piece::Cut));
                    return self.stream(out);
                }
                Some(Fault::Malformed(at)) if at == i => {
                    out.push_back((
                        0.0,
                        Piece::Bytes(
                            b"data: {\"choices\": [{\"delta\": {\"content\": \"w\n\n".to_vec(),
                        ),
                    ));
                    out.push_back((0.0, Piece::End));
                    return self.stream(out);
                }
                Some(Fault::ErrorEvent(at)) if at == i => {
                    out.push_back((0.0, sse(&json!({"error": {"message": "Server busy, please try again later.", "type": "server_error"}}))));
                    out.push_back((0.0, Piece::End));
                    return self.stream(out);
                }
                _ => {}
            }
            out.push_back((
                5.0,
                sse(&self.chunk(&id, json!({"content": word}), Value::Null)),
            ));
        }
        out.push_back((0.0, sse(&self.chunk(&id, json!({}), json!("stop")))));
        if body["stream_options"]["include_usage"] == true {
            let mut last = self.chunk(&id, json!({}), Value::Null);
            last["choices"] = json!([]);
            last["usage"] = usage;
            out.push_back((0.0, sse(&last)));
        }
        if fault != Some(Fault::NoDone) {
            out.push_back((0.0, Piece::Bytes(b"data: [DONE]\n\n".to_vec())));
        }
        out.push_back((0.0, Piece::End));
        self.stream(out)
    }

    fn stream(&self, pieces: VecDeque<(f64, Piece)>) -> Scripted {
        Scripted {
            head: Some(Head {
                status: 200,
                retry_after: None,
                event_stream: true,
            }),
            pieces,
            cancelled: self.cancelled.clone(),
        }
    }
}

/// A reply as a script: pieces with the time each takes (infinite: silence).
pub struct Scripted {
    head: Option<Head>,
    pieces: VecDeque<(f64, Piece)>,
    cancelled: Rc<Cell<usize>>,
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
