//! The service worker's `/v1/chat/completions`: [`crate::router`]'s policy with the I/O around
//! it. Each try goes to the route the router chooses (a remote provider over `fetch`, or the
//! page's local engine through a callback that answers like a provider), under the provider's
//! deadlines; busy answers are retried or failed over, a stream that breaks is continued on the
//! next route as one stream, and when nothing can answer the client gets the 503.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, AbortSignal, Headers, ReadableStreamDefaultReader, Request, RequestInit,
    Response,
};

use super::answers::AnswerStore;
use crate::download::fetch::{fetch_request, sleep};
use crate::openai::sse::{self, SseDecoder, SseEvent};
use crate::openai::ApiError;
use crate::retry::retry_after_ms;
use crate::router::{
    cache, classify, coalesce_key, continuation, provider_model, unavailable, Choice, Coalescer,
    Health, Local, Metrics, Next, Role, Route, Router, RouterConfig, Signal, Stitch, Ticket,
    Verdict,
};

#[wasm_bindgen]
extern "C" {
    /// setTimeout passes its third argument to the handler.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout_with(handler: &Function, ms: i32, arg: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
}

/// How long a request may wait for a route in all, before the 503.
const MAX_WAIT_MS: f64 = 60_000.0;
/// How much of an error body is read to classify it.
const ERROR_BODY_BYTES: usize = 16 << 10;

struct State {
    router: Router,
    metrics: Metrics,
    coalescer: Coalescer,
    /// Resolvers of the requests waiting on an identical one in flight, by key.
    followers: HashMap<String, Vec<Function>>,
    /// Kept answers, opened at first use; None after it failed to open (private mode, no
    /// IndexedDB): the router works on without them.
    answers: Option<Option<Rc<AnswerStore>>>,
}

/// The router in the service worker.
#[wasm_bindgen]
pub struct RouterCore {
    state: Rc<RefCell<State>>,
}

/// Where the answer goes: the service worker's glue around a `ReadableStream`.
struct Sink {
    obj: JsValue,
    started: bool,
}

impl Sink {
    fn call(&self, name: &str, args: &[JsValue]) {
        if let Ok(f) = Reflect::get(&self.obj, &name.into()).and_then(|f| f.dyn_into::<Function>())
        {
            let _ = f.apply(&self.obj, &args.iter().collect());
        }
    }

    fn start(&mut self, status: u16, content_type: &str, route: &str) {
        let headers = Object::new();
        let _ = Reflect::set(&headers, &"content-type".into(), &content_type.into());
        let _ = Reflect::set(&headers, &"cache-control".into(), &"no-cache".into());
        let _ = Reflect::set(&headers, &"x-candlelight-route".into(), &route.into());
        self.call("start", &[status.into(), headers.into()]);
        self.started = true;
    }

    fn write(&self, text: &str) {
        self.call("write", &[text.into()]);
    }

    fn close(&self) {
        self.call("close", &[]);
    }

    /// A whole answer at once.
    fn answer(&mut self, status: u16, body: &Value, route: &str, retry_after_s: Option<u64>) {
        let headers = Object::new();
        let _ = Reflect::set(&headers, &"content-type".into(), &"application/json".into());
        let _ = Reflect::set(&headers, &"x-candlelight-route".into(), &route.into());
        if let Some(s) = retry_after_s {
            let _ = Reflect::set(&headers, &"retry-after".into(), &s.to_string().into());
        }
        self.call("start", &[status.into(), headers.into()]);
        self.started = true;
        self.write(&body.to_string());
        self.close();
    }
}

fn now() -> f64 {
    js_sys::Date::now()
}

/// `promise`, or None if it has not settled within `ms`.
async fn within(promise: Promise, ms: f64) -> Option<Result<JsValue, JsValue>> {
    let marker = JsValue::from_str("\u{0}candlelight-timeout");
    let mut timer = JsValue::UNDEFINED;
    let tagged = Promise::new(&mut |resolve, _| {
        timer = set_timeout_with(&resolve, ms.min(i32::MAX as f64) as i32, &marker);
    });
    let race = Promise::race(&js_sys::Array::of2(&promise, &tagged));
    let out = JsFuture::from(race).await;
    // A stream reads once per chunk: its stall timers must not outlive the read they guard.
    clear_timeout(&timer);
    match out {
        Ok(v) if v == marker => None,
        other => Some(other),
    }
}

/// How one try ended.
enum Tried {
    /// The whole answer went to the client: the body when it came whole, None when streamed.
    Answered(Option<Value>),
    /// Nothing reached the client; this is why.
    Failed(Verdict, Option<(u16, String)>),
    /// Part of a stream reached the client, then this.
    Broke(Verdict),
}

/// What answered a request: the route, and the whole answer (a `chat.completion`) when one
/// finished; `fresh` is false for an answer that came from the cache.
struct Answered {
    route: String,
    completion: Option<Value>,
    fresh: bool,
}

fn route_name(config: &RouterConfig, route: Route) -> String {
    match route {
        Route::Local => "local".into(),
        Route::Remote(i) => config.providers[i].name.clone(),
    }
}

fn outcome_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Ok => "ok",
        Verdict::Busy { .. } => "busy",
        Verdict::KeyRejected { .. } => "key_rejected",
        Verdict::Failed => "failed",
        Verdict::ClientError => "client_error",
    }
}

#[wasm_bindgen]
impl RouterCore {
    /// A router for `config` (the `RouterConfig` shape: mode, providers, policies).
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<RouterCore, JsValue> {
        let config: RouterConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| ApiError::invalid(format!("router config: {e}")))?;
        let router = Router::new(config, now()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let state = State {
            router,
            metrics: Metrics::new(),
            coalescer: Coalescer::default(),
            followers: HashMap::new(),
            answers: None,
        };
        Ok(RouterCore {
            state: Rc::new(RefCell::new(state)),
        })
    }

    /// What the local engine can do: a model ready, and fast enough on this device.
    #[wasm_bindgen(js_name = setLocal)]
    pub fn set_local(&self, ready: bool, capable: bool) {
        self.state
            .borrow_mut()
            .router
            .set_local(Local { ready, capable });
    }

    /// `/v1/models`: the local model (when one is ready) and each provider's mapped models.
    pub fn models(&self, local_id: Option<String>) -> String {
        let st = self.state.borrow();
        let mut data: Vec<Value> = local_id
            .into_iter()
            .map(|id| json!({"id": id, "object": "model", "owned_by": "local"}))
            .collect();
        for p in &st.router.config().providers {
            for (alias, model) in &p.models {
                data.push(json!({"id": alias, "object": "model", "owned_by": p.name, "provider_model": model}));
            }
        }
        json!({"object": "list", "data": data}).to_string()
    }

    /// `/v1/metrics`: Prometheus text format.
    pub fn metrics(&self) -> String {
        self.state.borrow().metrics.render()
    }

    /// healthy, degraded, critical or down.
    pub fn health(&self) -> String {
        match self.state.borrow().router.health(now()) {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Critical => "critical",
            Health::Down => "down",
        }
        .into()
    }

    /// Answers one chat-completions request body through `sink` (`start(status, headers)`,
    /// `write(text)`, `close()`). `local(body, signal)` answers on this device with a Response
    /// shaped like a provider's (null: no local engine); `signal` ends everything (the page went
    /// away). Resolves when the answer is complete.
    pub fn answer(
        &self,
        body: String,
        sink: JsValue,
        local: JsValue,
        signal: Option<AbortSignal>,
    ) -> Promise {
        let state = self.state.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut sink = Sink {
                obj: sink,
                started: false,
            };
            run(
                state,
                body,
                &mut sink,
                local.dyn_into::<Function>().ok(),
                signal,
            )
            .await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

async fn run(
    state: Rc<RefCell<State>>,
    body: String,
    sink: &mut Sink,
    local: Option<Function>,
    signal: Option<AbortSignal>,
) {
    let request: Value = match serde_json::from_str(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let e = json!({"error": {"message": "the request body is not a JSON object", "type": "invalid_request_error", "param": null, "code": null}});
            return sink.answer(400, &e, "router", None);
        }
    };
    // Identical deterministic requests in flight: the first goes out, the others take its answer.
    let key = coalesce_key(&request);
    let mut leader = false;
    if let Some(k) = &key {
        let role = state.borrow_mut().coalescer.join(k);
        match role {
            Role::Leader => leader = true,
            Role::Follower(_) => {
                if let Some((route, answer)) = leader_answer(&state, k).await {
                    state.borrow_mut().metrics.coalesced();
                    return replay(sink, &answer, &request, &route);
                }
                // The first got no whole answer: this one goes out itself.
            }
        }
    }
    let answered = route_request(&state, request, sink, local, signal, key.as_deref()).await;
    let whole = answered
        .as_ref()
        .and_then(|a| a.completion.as_ref().map(|c| (a.route.as_str(), c)));
    if let (true, Some(k)) = (leader, &key) {
        state.borrow_mut().coalescer.finish(k);
        let waiting = state.borrow_mut().followers.remove(k).unwrap_or_default();
        let message = whole.map_or(JsValue::NULL, |(route, c)| {
            json!({"route": route, "answer": c}).to_string().into()
        });
        for resolve in waiting {
            let _ = resolve.call1(&JsValue::NULL, &message);
        }
    }
    if let (
        Some(k),
        Some(Answered {
            completion: Some(c),
            fresh: true,
            ..
        }),
    ) = (&key, &answered)
    {
        keep(&state, k, c).await;
    }
}

/// The answer of the identical request in flight, once it has one (None if it got none).
async fn leader_answer(state: &Rc<RefCell<State>>, key: &str) -> Option<(String, Value)> {
    let wait = Promise::new(&mut |resolve, _| {
        state
            .borrow_mut()
            .followers
            .entry(key.to_string())
            .or_default()
            .push(resolve)
    });
    let message: Value =
        serde_json::from_str(&JsFuture::from(wait).await.ok()?.as_string()?).ok()?;
    Some((
        message["route"].as_str()?.to_string(),
        message["answer"].clone(),
    ))
}

/// A whole answer sent as `request` wants it: a stream of chunks or one JSON body.
fn replay(sink: &mut Sink, answer: &Value, request: &Value, route: &str) {
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        sink.start(200, "text/event-stream", route);
        sink.write(&cache::replay(answer, request));
        sink.close();
    } else {
        sink.answer(200, answer, route, None);
    }
}

async fn answer_store(state: &Rc<RefCell<State>>) -> Option<Rc<AnswerStore>> {
    let cap = state.borrow().router.config().cache_bytes;
    if cap == 0 {
        return None;
    }
    if let Some(opened) = state.borrow().answers.clone() {
        return opened;
    }
    let opened = AnswerStore::open(cap).await.ok().map(Rc::new);
    state.borrow_mut().answers.get_or_insert(opened).clone()
}

/// Keeps a finished deterministic answer for the day nothing can answer.
async fn keep(state: &Rc<RefCell<State>>, key: &str, answer: &Value) {
    if answer
        .pointer("/choices/0/finish_reason")
        .is_none_or(Value::is_null)
    {
        return;
    }
    if let Some(store) = answer_store(state).await {
        if let Ok(evicted) = store.put(key, answer).await {
            let mut st = state.borrow_mut();
            st.metrics.cache("kept", 1);
            st.metrics.cache("evicted", evicted as u64);
        }
    }
}

async fn kept_answer(state: &Rc<RefCell<State>>, key: &str) -> Option<Value> {
    answer_store(state).await?.get(key).await
}

async fn route_request(
    state: &Rc<RefCell<State>>,
    mut request: Value,
    sink: &mut Sink,
    local: Option<Function>,
    signal: Option<AbortSignal>,
    key: Option<&str>,
) -> Option<Answered> {
    let aborted = || signal.as_ref().is_some_and(|s| s.aborted());
    let started_at = now();
    let mut tried: Vec<Route> = Vec::new();
    let mut retries: HashMap<usize, u32> = HashMap::new();
    let mut stitch = Stitch::default();
    loop {
        if aborted() {
            return None;
        }
        let choice = state.borrow_mut().router.choose(now(), &tried);
        let ticket = match choice {
            Choice::Go(t) => t,
            Choice::Wait { ms } if now() - started_at + ms < MAX_WAIT_MS => {
                sleep(ms.min(1000.0)).await;
                continue;
            }
            Choice::Wait { ms } | Choice::Unavailable { retry_after_ms: ms } => {
                // Nothing can answer: a kept answer to the same deterministic request, if any.
                if let (false, Some(k)) = (sink.started, key) {
                    if let Some(kept) = kept_answer(state, k).await {
                        let mut st = state.borrow_mut();
                        st.metrics.cache("served", 1);
                        st.metrics.tried("cache", "ok");
                        drop(st);
                        replay(sink, &kept, &request, "cache");
                        return Some(Answered {
                            route: "cache".into(),
                            completion: Some(kept),
                            fresh: false,
                        });
                    }
                }
                state.borrow_mut().metrics.unanswered();
                let (status, body, retry_after) = unavailable(ms);
                if sink.started {
                    // Mid-stream with nowhere left to go: the error as the stream's last event.
                    sink.write(&sse::encode(&body.to_string()));
                    sink.close();
                    return None;
                }
                sink.answer(status, &body, "none", Some(retry_after));
                return None;
            }
        };
        let name = route_name(state.borrow().router.config(), ticket.route);
        let result = try_route(
            state,
            &ticket,
            &request,
            &name,
            sink,
            local.as_ref(),
            signal.as_ref(),
            &mut stitch,
        )
        .await;
        let broke = matches!(result, Tried::Broke(_));
        let (verdict, kept) = match result {
            Tried::Answered(whole) => {
                state
                    .borrow_mut()
                    .router
                    .report(ticket, Verdict::Ok, 0, now(), 0.0);
                state.borrow_mut().metrics.tried(&name, "ok");
                state
                    .borrow_mut()
                    .metrics
                    .timed(&name, (now() - started_at) / 1000.0, None);
                let completion = whole.or_else(|| stitch.completion());
                return Some(Answered {
                    route: name,
                    completion,
                    fresh: true,
                });
            }
            Tried::Failed(v, kept) => (v, kept),
            Tried::Broke(v) => {
                let (partial, emitted) = stitch.broken();
                request = continuation(&request, &partial, emitted);
                (v, None)
            }
        };
        let attempt = match ticket.route {
            Route::Remote(i) => *retries.get(&i).unwrap_or(&0),
            Route::Local => 0,
        };
        let next = state.borrow_mut().router.report(
            ticket,
            verdict,
            attempt,
            now(),
            js_sys::Math::random(),
        );
        state
            .borrow_mut()
            .metrics
            .tried(&name, outcome_name(&verdict));
        match next {
            Next::Done => return None,
            // A broken stream continues on the next route, per the failover order.
            Next::Retry { .. } if broke => {
                state
                    .borrow_mut()
                    .metrics
                    .failed_over(&name, outcome_name(&verdict));
                tried.push(ticket.route);
            }
            Next::Retry { after_ms } => {
                if let Route::Remote(i) = ticket.route {
                    *retries.entry(i).or_default() += 1;
                }
                sleep(after_ms).await;
            }
            Next::FailOver => {
                state
                    .borrow_mut()
                    .metrics
                    .failed_over(&name, outcome_name(&verdict));
                tried.push(ticket.route);
            }
            Next::Answer => {
                let (status, text) = kept.unwrap_or((400, String::new()));
                let body = serde_json::from_str(&text).unwrap_or_else(
                    |_| json!({"error": {"message": text, "type": "invalid_request_error"}}),
                );
                sink.answer(status, &body, &name, None);
                return None;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn try_route(
    state: &Rc<RefCell<State>>,
    ticket: &Ticket,
    request: &Value,
    name: &str,
    sink: &mut Sink,
    local: Option<&Function>,
    signal: Option<&AbortSignal>,
    stitch: &mut Stitch,
) -> Tried {
    let controller = AbortController::new().ok();
    let inner = controller.as_ref().map(|c| c.signal());
    // The client going away ends this try too.
    let _relay = signal.zip(controller.as_ref()).map(|(outer, c)| {
        let c = c.clone();
        let f = Closure::<dyn Fn()>::new(move || c.abort());
        let _ = outer.add_event_listener_with_callback("abort", f.as_ref().unchecked_ref());
        f
    });
    let (deadlines, body, key) = {
        let st = state.borrow();
        let config = st.router.config();
        let mut body = request.clone();
        let deadlines = match ticket.route {
            Route::Remote(i) => {
                if let Some(model) = request.get("model").and_then(Value::as_str) {
                    body["model"] = provider_model(config, i, model).into();
                }
                config.providers[i].deadlines
            }
            Route::Local => config.local_deadlines,
        };
        (
            deadlines,
            body,
            st.router.api_key(ticket).map(str::to_string),
        )
    };
    let response = match ticket.route {
        Route::Remote(i) => {
            let url = format!(
                "{}/chat/completions",
                state.borrow().router.config().providers[i]
                    .base_url
                    .trim_end_matches('/')
            );
            let init = RequestInit::new();
            init.set_method("POST");
            let headers = Headers::new().expect("Headers can be made");
            let _ = headers.set("content-type", "application/json");
            if let Some(k) = &key {
                let _ = headers.set("authorization", &format!("Bearer {k}"));
            }
            init.set_headers(&headers);
            init.set_body(&JsValue::from_str(&body.to_string()));
            if let Some(s) = &inner {
                init.set_signal(Some(s));
            }
            match Request::new_with_str_and_init(&url, &init) {
                Ok(req) => fetch_request(&req),
                Err(_) => return Tried::Failed(Verdict::Failed, None),
            }
        }
        Route::Local => match local {
            Some(f) => match f.call2(
                &JsValue::NULL,
                &body.to_string().into(),
                &inner.clone().map_or(JsValue::NULL, JsValue::from),
            ) {
                Ok(p) => Promise::resolve(&p),
                Err(_) => return Tried::Failed(Verdict::Failed, None),
            },
            None => return Tried::Failed(Verdict::Failed, None),
        },
    };
    let abort = || {
        if let Some(c) = &controller {
            c.abort();
        }
    };
    let response: Response =
        match within(response, deadlines.connect_ms.max(deadlines.first_byte_ms)).await {
            None => {
                abort();
                return Tried::Failed(classify(&Signal::NoFirstByte), None);
            }
            Some(Err(_)) => return Tried::Failed(classify(&Signal::Refused), None),
            Some(Ok(r)) => match r.dyn_into() {
                Ok(r) => r,
                Err(_) => return Tried::Failed(Verdict::Failed, None),
            },
        };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .ok()
        .flatten()
        .and_then(|v| retry_after_ms(&v, now()));
    let streaming = request.get("stream").and_then(Value::as_bool) == Some(true);
    let Some(body) = response.body() else {
        return Tried::Failed(Verdict::Failed, None);
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let is_sse = response
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|t| t.contains("text/event-stream"));
    if !(200..300).contains(&status) || !streaming || !is_sse {
        // A whole body: an error to classify, or a non-streamed answer.
        let text = match read_all(
            &reader,
            if (200..300).contains(&status) {
                usize::MAX
            } else {
                ERROR_BODY_BYTES
            },
            deadlines.stall_ms,
        )
        .await
        {
            Some(t) => t,
            None => {
                abort();
                return Tried::Failed(classify(&Signal::Stalled), None);
            }
        };
        let verdict = classify(&Signal::Http {
            status,
            body: &text,
            retry_after_ms: retry_after,
        });
        if verdict != Verdict::Ok {
            return Tried::Failed(verdict, Some((status, text)));
        }
        return match serde_json::from_str::<Value>(&text) {
            Ok(answer) if !streaming => {
                tally(state, name, &answer);
                sink.answer(200, &answer, name, None);
                Tried::Answered(Some(answer))
            }
            _ => Tried::Failed(Verdict::Failed, None),
        };
    }
    // A stream: pass chunks on as they come, under the stall deadline.
    let mut decoder = SseDecoder::default();
    let mut first = true;
    loop {
        let wait = if first {
            deadlines.first_byte_ms
        } else {
            deadlines.stall_ms
        };
        let step = match within(reader.read(), wait).await {
            None => {
                abort();
                return broke_or_failed(sink, Signal::Stalled);
            }
            Some(Err(_)) => return broke_or_failed(sink, Signal::Cut),
            Some(Ok(step)) => step,
        };
        first = false;
        let done = Reflect::get(&step, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let events = if done {
            decoder.finish()
        } else {
            let bytes: Uint8Array = Reflect::get(&step, &"value".into())
                .map(|v| v.unchecked_into())
                .unwrap_or_else(|_| Uint8Array::new_with_length(0));
            decoder.push(&bytes.to_vec())
        };
        let Ok(events) = events else {
            abort();
            return broke_or_failed(sink, Signal::Malformed);
        };
        for event in events {
            match event {
                SseEvent::Done => {
                    sink.write(sse::DONE);
                    sink.close();
                    let _ = reader.cancel();
                    return Tried::Answered(None);
                }
                SseEvent::Data(data) => {
                    let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
                        abort();
                        return broke_or_failed(sink, Signal::Malformed);
                    };
                    if chunk.get("error").is_some() {
                        abort();
                        let verdict = classify(&Signal::Http {
                            status: 503,
                            body: &data,
                            retry_after_ms: None,
                        });
                        return if sink.started {
                            Tried::Broke(verdict)
                        } else {
                            Tried::Failed(verdict, None)
                        };
                    }
                    tally(state, name, &chunk);
                    if let Some(out) = stitch.pass(chunk) {
                        if !sink.started {
                            sink.start(200, "text/event-stream", name);
                        }
                        sink.write(&sse::encode(&out.to_string()));
                    }
                }
            }
        }
        if done {
            // The stream ended without [DONE]: cut.
            return broke_or_failed(sink, Signal::Cut);
        }
    }
}

fn broke_or_failed(sink: &Sink, signal: Signal<'static>) -> Tried {
    let verdict = classify(&signal);
    if sink.started {
        Tried::Broke(verdict)
    } else {
        Tried::Failed(verdict, None)
    }
}

/// Counts the tokens an answer or a final chunk reports.
fn tally(state: &Rc<RefCell<State>>, route: &str, v: &Value) {
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        state
            .borrow_mut()
            .metrics
            .tokens(route, n("prompt_tokens"), n("completion_tokens"));
    }
}

/// The body as text, at most `limit` bytes, or None if it stalls.
async fn read_all(
    reader: &ReadableStreamDefaultReader,
    limit: usize,
    stall_ms: f64,
) -> Option<String> {
    let mut bytes = Vec::new();
    loop {
        let step = within(reader.read(), stall_ms).await?.ok()?;
        if Reflect::get(&step, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
        {
            break;
        }
        let piece: Uint8Array = Reflect::get(&step, &"value".into()).ok()?.unchecked_into();
        bytes.extend(piece.to_vec());
        if bytes.len() >= limit {
            let _ = reader.cancel();
            break;
        }
    }
    bytes.truncate(limit.min(bytes.len()));
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
