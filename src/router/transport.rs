//! What the router needs from around it, as traits, so that every decision it takes runs in
//! native tests: sending one try to a route and reading its reply (a provider over `fetch` and a
//! page's engine over a port in the browser, an engine in the same thread, a scripted fake in the
//! tests), the clock and randomness, and the client the answer goes to.

use serde_json::Value;

use super::Route;

/// Where one try goes and what it carries.
pub struct Outgoing<'a> {
    pub route: Route,
    /// The provider's chat-completions URL; None for the local route.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer`, only to the provider it belongs to.
    pub api_key: Option<&'a str>,
    /// The request body as this route gets it (the model name mapped for a provider).
    pub body: &'a Value,
}

/// The start of a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub status: u16,
    /// The `Retry-After` header as sent.
    pub retry_after: Option<String>,
    /// `content-type: text/event-stream`.
    pub event_stream: bool,
}

/// What reading a reply's body gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Body bytes as they arrived (SSE or JSON text, split anywhere).
    Bytes(Vec<u8>),
    /// One value from an engine in this thread, not encoded: a chunk of a stream, or the whole
    /// answer.
    Json(Value),
    /// The stream's `[DONE]`, from an engine in this thread.
    Done,
    /// The body ended.
    End,
    /// Nothing came within the deadline.
    Stalled,
    /// The connection broke.
    Cut,
}

/// Why a try got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No answer within the deadline.
    NoFirstByte,
    /// The connection was refused or failed.
    Refused,
    /// The try could not be made at all (no such route now, a request the browser refuses).
    Unsendable,
}

/// A reply being read.
#[allow(async_fn_in_trait)]
pub trait Reply {
    fn head(&self) -> &Head;
    /// The next piece of the body, or `Stalled` if none comes within `within_ms`.
    async fn next(&mut self, within_ms: f64) -> Piece;
    /// The router gives up on this reply: stop the request.
    fn cancel(&mut self);
}

/// Sending tries, and the time and chance they are decided by.
#[allow(async_fn_in_trait)]
pub trait Transport {
    type Reply: Reply;
    /// Sends a try; resolves to its reply's head, or why none came within `within_ms`.
    async fn send(&self, out: Outgoing<'_>, within_ms: f64) -> Result<Self::Reply, SendError>;
    async fn sleep(&self, ms: f64);
    /// Unix milliseconds.
    fn now(&self) -> f64;
    /// A uniform random number in [0, 1), for backoff jitter.
    fn random(&self) -> f64;
}

/// How the answer to the client starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Start<'a> {
    pub status: u16,
    /// Server-sent events rather than one JSON body.
    pub stream: bool,
    /// What answered: `local`, a provider's name, `cache`, `router`, `none`.
    pub route: &'a str,
    pub retry_after_s: Option<u64>,
}

impl Start<'_> {
    /// The response headers.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::with_capacity(4);
        match self.stream {
            true => {
                h.push(("content-type", "text/event-stream".into()));
                h.push(("cache-control", "no-cache".into()));
            }
            false => h.push(("content-type", "application/json".into())),
        }
        h.push(("x-candlelight-route", header_text(self.route)));
        if let Some(s) = self.retry_after_s {
            h.push(("retry-after", s.to_string()));
        }
        h
    }
}

/// `text` as a header value: visible ASCII kept, every other byte of its UTF-8 written `%XX`.
/// A provider may be named "Zhipu 智谱"; headers carry bytes up to 0xFF only, and a `Response`
/// given more throws, which would leave the app's fetch unsettled.
pub fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'%' => out.push_str("%25"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The app's end of one request.
pub trait Client {
    fn start(&mut self, start: &Start);
    fn write(&mut self, text: &str);
    fn close(&mut self);
    /// The app went away (closed the page, aborted its fetch).
    fn gone(&self) -> bool;
}
