//! One request's way through the routes. Each try goes where the router says (breakers, rate
//! limits, keys) under the route's deadlines; a busy answer is retried with backoff or failed
//! over, a stream that breaks continues on the next route as one stream, the client's own error
//! goes back to it, and when nothing can answer the client gets a cached answer or the 503.

use std::collections::HashMap;

use serde_json::Value;

use super::busy::{classify, Signal, Verdict};
use super::cache::AnswerStorage;
use super::routes::{continuation, provider_model, unavailable, Decision, Next, Route, Ticket};
use super::service::{Answered, Answering, Service};
use super::stitch::Stitch;
use super::transport::{Client, Outgoing, Piece, Reply, SendError, Transport};
use crate::openai::sse::{self, SseDecoder, SseEvent};
use crate::retry::retry_after_ms;

/// How long a request may wait for a route in all, before the 503.
const MAX_WAIT_MS: f64 = 60_000.0;
/// How much of an error body is read to classify it.
const ERROR_BODY_BYTES: usize = 16 << 10;
/// The most of a whole (not streamed) answer read: a chat completion is kilobytes; a provider
/// sending more is broken or hostile, and its answer fails over cut short (invalid JSON).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How one try ended.
enum Tried {
    /// The whole answer went to the client: the body when it came whole, None when streamed.
    Answered(Option<Value>),
    /// Nothing reached the client; this is why (and the route's status and body).
    Failed(Verdict, Option<(u16, String)>),
    /// Part of a stream reached the client, then this.
    Broke(Verdict),
    /// The client went away.
    Abandoned,
}

/// A whole reply body.
enum Body {
    Text(String),
    /// From an engine in this thread.
    Json(Value),
}

fn outcome_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Busy { .. } => "busy",
        Verdict::KeyRejected { .. } => "key_rejected",
        Verdict::Failed => "failed",
        Verdict::ClientError => "client_error",
        Verdict::Unsupported => "unsupported",
    }
}

fn broke_or_failed<C>(out: &Answering<'_, C>, signal: Signal<'_>) -> Tried {
    let verdict = classify(&signal);
    if out.started {
        Tried::Broke(verdict)
    } else {
        Tried::Failed(verdict, None)
    }
}

impl<S: AnswerStorage> Service<S> {
    /// Tries routes until one answers `request` or none can; `key` is its cache key when it
    /// is deterministic.
    pub(super) async fn route<T: Transport, C: Client>(
        &self,
        mut request: Value,
        transport: &T,
        out: &mut Answering<'_, C>,
        key: Option<&str>,
    ) -> Option<Answered> {
        let started_at = transport.now();
        // Each continuation is built from this, not from the last continuation: a second break
        // would otherwise stack two prefixes and take the first part off max_tokens twice.
        let original = request.clone();
        let mut tried: Vec<Route> = Vec::new();
        let mut retries: HashMap<usize, u32> = HashMap::new();
        let mut stitch = Stitch::default();
        // A route's "I cannot do this" (status and body), said when no route can answer.
        let mut unsupported: Option<(u16, String)> = None;
        loop {
            if out.client.gone() {
                return None;
            }
            let decision = self.router.borrow_mut().choose(transport.now(), &tried);
            let ticket = match decision {
                Decision::Go(t) => t,
                Decision::Wait { ms } if transport.now() - started_at + ms < MAX_WAIT_MS => {
                    transport.sleep(ms.min(1000.0)).await;
                    continue;
                }
                Decision::Wait { ms } | Decision::Unavailable { retry_after_ms: ms } => {
                    let no_remote = self.router.borrow().config().providers.is_empty();
                    if let (Some((status, text)), false, true) =
                        (&unsupported, out.started, no_remote)
                    {
                        let body = serde_json::from_str(text).unwrap_or(Value::Null);
                        out.whole(*status, &body, "local", None);
                        return None;
                    }
                    return self.unanswered(&request, transport, out, key, ms).await;
                }
            };
            let name = match ticket.route {
                Route::Local => "local".to_string(),
                Route::Remote(i) => self.router.borrow().config().providers[i].name.clone(),
            };
            let result = self
                .try_route(&ticket, &request, &name, transport, out, &mut stitch)
                .await;
            let broke = matches!(result, Tried::Broke(_));
            // A stream that broke inside its tool calls cannot go on as text elsewhere.
            let dead_end = broke && !stitch.resumable();
            let (verdict, failed_with) = match result {
                Tried::Answered(whole) => {
                    let now = transport.now();
                    self.router
                        .borrow_mut()
                        .report(ticket, Verdict::Ok, 0, now, 0.0);
                    let mut metrics = self.metrics.borrow_mut();
                    metrics.tried(&name, "ok");
                    metrics.timed(&name, (now - started_at) / 1000.0, None);
                    return Some(Answered {
                        route: name,
                        completion: whole.or_else(|| stitch.completion()),
                        fresh: true,
                    });
                }
                Tried::Abandoned => {
                    self.router.borrow_mut().abandon(ticket);
                    return None;
                }
                Tried::Failed(v, failed_with) => (v, failed_with),
                Tried::Broke(v) => {
                    let (partial, emitted) = stitch.broken();
                    request = continuation(&original, &partial, emitted);
                    (v, None)
                }
            };
            if verdict == Verdict::Unsupported {
                unsupported = failed_with.clone();
            }
            let attempt = match ticket.route {
                Route::Remote(i) => *retries.get(&i).unwrap_or(&0),
                Route::Local => 0,
            };
            let next = self.router.borrow_mut().report(
                ticket,
                verdict,
                attempt,
                transport.now(),
                transport.random(),
            );
            self.metrics
                .borrow_mut()
                .tried(&name, outcome_name(&verdict));
            if dead_end {
                return self.unanswered(&request, transport, out, None, 0.0).await;
            }
            match next {
                Next::Done => return None,
                // A broken stream continues on the next route, per the failover order.
                Next::Retry { .. } | Next::FailOver if broke => {
                    self.metrics
                        .borrow_mut()
                        .failed_over(&name, outcome_name(&verdict));
                    tried.push(ticket.route);
                }
                Next::Retry { after_ms } => {
                    // Only busy answers spend the provider's retries; the next key is free.
                    if let (Route::Remote(i), Verdict::Busy { .. }) = (ticket.route, verdict) {
                        *retries.entry(i).or_default() += 1;
                    }
                    transport.sleep(after_ms).await;
                }
                Next::FailOver => {
                    self.metrics
                        .borrow_mut()
                        .failed_over(&name, outcome_name(&verdict));
                    tried.push(ticket.route);
                }
                Next::Answer => {
                    let (status, text) = failed_with.unwrap_or((400, String::new()));
                    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
                        serde_json::json!({"error": {"message": text, "type": "invalid_request_error"}})
                    });
                    out.whole(status, &body, &name, None);
                    return None;
                }
            }
        }
    }

    /// Nothing can answer: the cached answer to the same deterministic request, if there is
    /// one; else the 503 (mid-stream: as the stream's last event).
    async fn unanswered<T: Transport, C: Client>(
        &self,
        request: &Value,
        transport: &T,
        out: &mut Answering<'_, C>,
        key: Option<&str>,
        retry_after_ms: f64,
    ) -> Option<Answered> {
        if let (false, Some(k)) = (out.started, key) {
            if let Some(cached) = self.cached_answer(k, transport.now()).await {
                {
                    let mut metrics = self.metrics.borrow_mut();
                    metrics.cache("served", 1);
                    metrics.tried("cache", "ok");
                }
                out.replay(&cached, request, "cache");
                return Some(Answered {
                    route: "cache".into(),
                    completion: Some(cached),
                    fresh: false,
                });
            }
        }
        self.metrics.borrow_mut().unanswered();
        let (status, body, retry_after) = unavailable(retry_after_ms);
        if out.started {
            out.client.write(&sse::encode(&body.to_string()));
            out.client.close();
        } else {
            out.whole(status, &body, "none", Some(retry_after));
        }
        None
    }

    /// One try on the route `ticket` names.
    async fn try_route<T: Transport, C: Client>(
        &self,
        ticket: &Ticket,
        request: &Value,
        name: &str,
        transport: &T,
        out: &mut Answering<'_, C>,
        stitch: &mut Stitch,
    ) -> Tried {
        let (deadlines, body, api_key, url) = {
            let router = self.router.borrow();
            let config = router.config();
            let mut body = request.clone();
            let (deadlines, url) = match ticket.route {
                Route::Remote(i) => {
                    if let Some(model) = request.get("model").and_then(Value::as_str) {
                        body["model"] = provider_model(config, i, model).into();
                    }
                    let p = &config.providers[i];
                    let url = format!("{}/chat/completions", p.base_url.trim_end_matches('/'));
                    (p.deadlines, Some(url))
                }
                Route::Local => (config.local_deadlines, None),
            };
            (
                deadlines,
                body,
                router.api_key(ticket).map(str::to_string),
                url,
            )
        };
        let outgoing = Outgoing {
            route: ticket.route,
            url,
            api_key: api_key.as_deref(),
            body: &body,
        };
        let first_byte = deadlines.connect_ms.max(deadlines.first_byte_ms);
        let mut reply = match transport.send(outgoing, first_byte).await {
            Ok(reply) => reply,
            Err(SendError::NoFirstByte) => {
                return Tried::Failed(classify(&Signal::NoFirstByte), None)
            }
            Err(SendError::Refused) => return Tried::Failed(classify(&Signal::Refused), None),
            Err(SendError::Unsendable) => return Tried::Failed(Verdict::Failed, None),
        };
        let head = reply.head().clone();
        let retry_after = head
            .retry_after
            .as_deref()
            .and_then(|v| retry_after_ms(v, transport.now()));
        let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
        let ok = (200..300).contains(&head.status);
        if !ok || !streaming || !head.event_stream {
            // A whole body: an error to classify, or an answer that is not streamed.
            let limit = if ok {
                MAX_ANSWER_BYTES
            } else {
                ERROR_BODY_BYTES
            };
            let Some(whole) = read_all(&mut reply, limit, deadlines.stall_ms).await else {
                reply.cancel();
                return Tried::Failed(classify(&Signal::Stalled), None);
            };
            let (text, parsed) = match whole {
                Body::Text(text) if !ok => {
                    // An error text goes on to the app: without the keys some echo.
                    let text = self.router.borrow().config().redact(&text);
                    let parsed = serde_json::from_str::<Value>(&text).ok();
                    (text, parsed)
                }
                Body::Text(text) => {
                    let parsed = serde_json::from_str::<Value>(&text).ok();
                    (text, parsed)
                }
                Body::Json(value) => (value.to_string(), Some(value)),
            };
            let verdict = classify(&Signal::Http {
                status: head.status,
                body: &text,
                retry_after_ms: retry_after,
            });
            if verdict != Verdict::Ok {
                return Tried::Failed(verdict, Some((head.status, text)));
            }
            return match parsed {
                Some(answer) if !streaming => {
                    self.tally(name, &answer);
                    out.whole(200, &answer, name, None);
                    Tried::Answered(Some(answer))
                }
                _ => Tried::Failed(Verdict::Failed, None),
            };
        }
        // A stream: pass chunks on as they come, under the stall deadline.
        let mut decoder = SseDecoder::default();
        let mut first = true;
        loop {
            let wait = match first {
                true => deadlines.first_byte_ms,
                false => deadlines.stall_ms,
            };
            let piece = reply.next(wait).await;
            first = false;
            if out.client.gone() {
                reply.cancel();
                return Tried::Abandoned;
            }
            let (events, ended) = match piece {
                Piece::Stalled => {
                    reply.cancel();
                    return broke_or_failed(out, Signal::Stalled);
                }
                Piece::Cut => return broke_or_failed(out, Signal::Cut),
                Piece::Json(chunk) => (vec![Event::Chunk(chunk)], false),
                Piece::Done => (vec![Event::Done], false),
                Piece::Bytes(bytes) => match decoder.push(&bytes) {
                    Ok(events) => (events.into_iter().map(Event::from).collect(), false),
                    Err(_) => {
                        reply.cancel();
                        return broke_or_failed(out, Signal::Malformed);
                    }
                },
                Piece::End => match decoder.finish() {
                    Ok(events) => (events.into_iter().map(Event::from).collect(), true),
                    Err(_) => return broke_or_failed(out, Signal::Malformed),
                },
            };
            for event in events {
                let chunk = match event {
                    Event::Done => {
                        out.client.write(sse::DONE);
                        out.client.close();
                        reply.cancel();
                        return Tried::Answered(None);
                    }
                    Event::Chunk(chunk) => chunk,
                    Event::Text(data) => match serde_json::from_str::<Value>(&data) {
                        Ok(chunk) => chunk,
                        Err(_) => {
                            reply.cancel();
                            return broke_or_failed(out, Signal::Malformed);
                        }
                    },
                };
                if chunk.get("error").is_some() {
                    reply.cancel();
                    let verdict = classify(&Signal::Http {
                        status: 503,
                        body: &chunk.to_string(),
                        retry_after_ms: None,
                    });
                    return match out.started {
                        true => Tried::Broke(verdict),
                        false => Tried::Failed(verdict, None),
                    };
                }
                self.tally(name, &chunk);
                if let Some(passed) = stitch.pass(chunk) {
                    if !out.started {
                        out.stream(name);
                    }
                    out.write_chunk(&passed);
                }
            }
            if ended {
                // The stream ended without [DONE]: cut.
                return broke_or_failed(out, Signal::Cut);
            }
        }
    }

    /// Counts the tokens an answer or a final chunk reports.
    fn tally(&self, route: &str, v: &Value) {
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.metrics
                .borrow_mut()
                .tokens(route, n("prompt_tokens"), n("completion_tokens"));
        }
    }
}

/// An event of a stream, decoded or straight from an engine in this thread.
enum Event {
    Text(String),
    Chunk(Value),
    Done,
}

impl From<SseEvent> for Event {
    fn from(e: SseEvent) -> Self {
        match e {
            SseEvent::Data(text) => Event::Text(text),
            SseEvent::Done => Event::Done,
        }
    }
}

/// The body, at most `limit` bytes, or None if it stalls or breaks.
async fn read_all<R: Reply>(reply: &mut R, limit: usize, stall_ms: f64) -> Option<Body> {
    let mut bytes = Vec::new();
    loop {
        match reply.next(stall_ms).await {
            Piece::Bytes(piece) => {
                bytes.extend(piece);
                if bytes.len() >= limit {
                    reply.cancel();
                    break;
                }
            }
            Piece::Json(value) => return Some(Body::Json(value)),
            Piece::End | Piece::Done => break,
            Piece::Stalled | Piece::Cut => return None,
        }
    }
    bytes.truncate(limit.min(bytes.len()));
    Some(Body::Text(String::from_utf8_lossy(&bytes).into_owned()))
}
