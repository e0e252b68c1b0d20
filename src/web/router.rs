//! The router's exports for the service worker: `RouterCore` runs [`crate::router::Service`]
//! with the browser's I/O around it. Its transport sends tries with `fetch` (a provider), to the
//! page that offered its engine (a callback answering with a `Response`), or to the engine this
//! same thread hosts (never leaving Rust); its client is the service worker's response stream.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, AbortSignal, Headers, ReadableStreamDefaultReader, Request, RequestInit,
    Response,
};

use super::answers::IdbAnswers;
use super::engine::EngineCore;
use crate::download::fetch::{fetch_request, sleep};
use crate::openai::{ApiError, SharedModel};
use crate::router::{
    check_caller, Caller, Client, EngineReply, Head, Local, Outgoing, Piece, Reply, Route,
    RouterConfig, SendError, Service, Start, Transport, MAX_REQUEST_BYTES,
};

#[wasm_bindgen]
extern "C" {
    /// setTimeout passes its third argument to the handler.
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout_with(handler: &Function, ms: i32, arg: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);
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

/// The router in the service worker.
#[wasm_bindgen]
pub struct RouterCore {
    service: Rc<Service<IdbAnswers>>,
    /// The engine this thread hosts, and its model id.
    engine: RefCell<Option<(Rc<SharedModel>, String)>>,
}

#[wasm_bindgen]
impl RouterCore {
    /// A router for `config` (the `RouterConfig` shape: mode, providers, policies).
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue) -> Result<RouterCore, JsValue> {
        let config: RouterConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| ApiError::invalid(format!("router config: {e}")))?;
        let service = Service::new(config, js_sys::Date::now(), IdbAnswers::default())
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(RouterCore {
            service: Rc::new(service),
            engine: RefCell::new(None),
        })
    }

    /// What the local engine can do: a model ready, and fast enough on this device.
    #[wasm_bindgen(js_name = setLocal)]
    pub fn set_local(&self, ready: bool, capable: bool) {
        self.service.set_local(Local { ready, capable });
    }

    /// The engine loaded in this same thread answers the local route (when no page's engine
    /// does), its chunks handed over without being encoded.
    #[wasm_bindgen(js_name = hostEngine)]
    pub fn host_engine(&self, engine: &EngineCore) {
        *self.engine.borrow_mut() = Some((engine.shared(), engine.id().to_string()));
    }

    /// `/v1/models`: the local model (when one is ready) and each provider's mapped models.
    pub fn models(&self, local_id: Option<String>) -> String {
        let hosted = self.engine.borrow().as_ref().map(|(_, id)| id.clone());
        self.service
            .models(local_id.or(hosted).as_deref())
            .to_string()
    }

    /// Why the router turns away a request, as `{status, body}` (an OpenAI-shaped error JSON
    /// text), or undefined when it takes it: page loads and form posts, bodies that are not
    /// JSON, and other sites' requests unless `allowedOrigins` names them.
    #[wasm_bindgen(js_name = checkCaller)]
    pub fn check_caller(
        &self,
        mode: &str,
        content_type: Option<String>,
        fetch_site: Option<String>,
        origin: Option<String>,
        own_origin: &str,
    ) -> JsValue {
        let caller = Caller {
            mode,
            content_type: content_type.as_deref(),
            fetch_site: fetch_site.as_deref(),
            origin: origin.as_deref(),
            own_origin,
        };
        match check_caller(&caller, &self.service.config().allowed_origins) {
            Ok(()) => JsValue::UNDEFINED,
            Err(refused) => {
                let out = Object::new();
                let _ = Reflect::set(&out, &"status".into(), &refused.status.into());
                let _ = Reflect::set(&out, &"body".into(), &refused.body().to_string().into());
                out.into()
            }
        }
    }

    /// The largest request body the router takes; the service worker stops reading there.
    #[wasm_bindgen(js_name = maxRequestBytes)]
    pub fn max_request_bytes(&self) -> usize {
        MAX_REQUEST_BYTES
    }

    /// `/v1/metrics`: Prometheus text format.
    pub fn metrics(&self) -> String {
        self.service.metrics()
    }

    /// healthy, degraded, critical or down.
    pub fn health(&self) -> String {
        self.service.health(js_sys::Date::now()).as_str().into()
    }

    /// Answers one chat-completions request body through `sink` (`start(status, headers)`,
    /// `write(text)`, `close()`). `local(body, signal)` is the page engine's answer, a Response
    /// shaped like a provider's, or null when that page is gone (then the engine hosted here
    /// answers, if any); `signal` ends everything (the client went away). Resolves when the
    /// answer is complete.
    pub fn answer(
        &self,
        body: String,
        sink: JsValue,
        local: JsValue,
        signal: Option<AbortSignal>,
    ) -> Promise {
        let service = self.service.clone();
        let transport = WebTransport {
            local: local.dyn_into::<Function>().ok(),
            engine: self.engine.borrow().as_ref().map(|(m, _)| m.clone()),
            signal: signal.clone(),
        };
        wasm_bindgen_futures::future_to_promise(async move {
            let mut client = Sink { obj: sink, signal };
            service.answer(&body, &transport, &mut client).await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// Where the answer goes: the service worker's glue around a `ReadableStream`.
struct Sink {
    obj: JsValue,
    signal: Option<AbortSignal>,
}

impl Sink {
    fn call(&self, name: &str, args: &[JsValue]) {
        if let Ok(f) = Reflect::get(&self.obj, &name.into()).and_then(|f| f.dyn_into::<Function>())
        {
            let _ = f.apply(&self.obj, &args.iter().collect());
        }
    }
}

impl Client for Sink {
    fn start(&mut self, start: &Start) {
        let headers = Object::new();
        for (k, v) in start.headers() {
            let _ = Reflect::set(&headers, &k.into(), &v.into());
        }
        self.call("start", &[start.status.into(), headers.into()]);
    }

    fn write(&mut self, text: &str) {
        self.call("write", &[text.into()]);
    }

    fn close(&mut self) {
        self.call("close", &[]);
    }

    fn gone(&self) -> bool {
        self.signal.as_ref().is_some_and(|s| s.aborted())
    }
}

struct WebTransport {
    /// The page engine's answer, when a page offered one.
    local: Option<Function>,
    /// The engine this thread hosts.
    engine: Option<Rc<SharedModel>>,
    /// The client's: its going away ends every try.
    signal: Option<AbortSignal>,
}

enum WebReply {
    Fetched(Fetched),
    Engine(EngineReply),
}

/// A `Response` being read, from a provider or a page's engine.
struct Fetched {
    head: Head,
    reader: ReadableStreamDefaultReader,
    abort: TryAbort,
}

/// One try's own abort, which the client's going away triggers too.
struct TryAbort {
    controller: Option<AbortController>,
    _relay: Option<Closure<dyn Fn()>>,
}

impl TryAbort {
    fn new(client: Option<&AbortSignal>) -> Self {
        let controller = AbortController::new().ok();
        let relay = client.zip(controller.as_ref()).map(|(outer, c)| {
            let c = c.clone();
            let f = Closure::<dyn Fn()>::new(move || c.abort());
            let _ = outer.add_event_listener_with_callback("abort", f.as_ref().unchecked_ref());
            f
        });
        Self {
            controller,
            _relay: relay,
        }
    }

    fn signal(&self) -> Option<AbortSignal> {
        self.controller.as_ref().map(|c| c.signal())
    }

    fn abort(&self) {
        if let Some(c) = &self.controller {
            c.abort();
        }
    }
}

impl Reply for WebReply {
    fn head(&self) -> &Head {
        match self {
            WebReply::Fetched(f) => &f.head,
            WebReply::Engine(e) => e.head(),
        }
    }

    async fn next(&mut self, within_ms: f64) -> Piece {
        let f = match self {
            WebReply::Fetched(f) => f,
            WebReply::Engine(e) => return e.next(within_ms).await,
        };
        let step = match within(f.reader.read(), within_ms).await {
            None => return Piece::Stalled,
            Some(Err(_)) => return Piece::Cut,
            Some(Ok(step)) => step,
        };
        let done = Reflect::get(&step, &"done".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if done {
            return Piece::End;
        }
        match Reflect::get(&step, &"value".into()) {
            Ok(v) => Piece::Bytes(v.unchecked_into::<Uint8Array>().to_vec()),
            Err(_) => Piece::Cut,
        }
    }

    fn cancel(&mut self) {
        match self {
            WebReply::Fetched(f) => {
                f.abort.abort();
                let _ = f.reader.cancel();
            }
            WebReply::Engine(e) => e.cancel(),
        }
    }
}

impl WebTransport {
    /// Reads the head of `response` (resolved within `within_ms`); None when the page's engine
    /// answered null (its page is gone).
    async fn fetched(
        &self,
        response: Promise,
        within_ms: f64,
        abort: TryAbort,
    ) -> Result<Option<Fetched>, SendError> {
        let response = match within(response, within_ms).await {
            None => {
                abort.abort();
                return Err(SendError::NoFirstByte);
            }
            Some(Err(_)) => return Err(SendError::Refused),
            Some(Ok(r)) if r.is_null() || r.is_undefined() => return Ok(None),
            Some(Ok(r)) => r
                .dyn_into::<Response>()
                .map_err(|_| SendError::Unsendable)?,
        };
        let header = |name: &str| response.headers().get(name).ok().flatten();
        let head = Head {
            status: response.status(),
            retry_after: header("retry-after"),
            event_stream: header("content-type").is_some_and(|t| t.contains("text/event-stream")),
        };
        let body = response.body().ok_or(SendError::Unsendable)?;
        Ok(Some(Fetched {
            head,
            reader: body.get_reader().unchecked_into(),
            abort,
        }))
    }
}

impl Transport for WebTransport {
    type Reply = WebReply;

    async fn send(&self, out: Outgoing<'_>, within_ms: f64) -> Result<WebReply, SendError> {
        let abort = TryAbort::new(self.signal.as_ref());
        let signal = abort.signal();
        match out.route {
            Route::Remote(_) => {
                let url = out.url.as_deref().ok_or(SendError::Unsendable)?;
                let init = RequestInit::new();
                init.set_method("POST");
                let headers = Headers::new().map_err(|_| SendError::Unsendable)?;
                let _ = headers.set("content-type", "application/json");
                if let Some(k) = out.api_key {
                    let _ = headers.set("authorization", &format!("Bearer {k}"));
                }
                init.set_headers(&headers);
                // A redirect would carry the key to wherever it points: a provider that
                // redirects counts as refused, and the next route answers.
                init.set_redirect(web_sys::RequestRedirect::Error);
                init.set_body(&JsValue::from_str(&out.body.to_string()));
                if let Some(s) = &signal {
                    init.set_signal(Some(s));
                }
                let request = Request::new_with_str_and_init(url, &init)
                    .map_err(|_| SendError::Unsendable)?;
                let response = fetch_request(&request);
                match self.fetched(response, within_ms, abort).await? {
                    Some(f) => Ok(WebReply::Fetched(f)),
                    None => Err(SendError::Unsendable),
                }
            }
            Route::Local => {
                if let Some(page) = &self.local {
                    let signal = signal.clone().map_or(JsValue::NULL, JsValue::from);
                    let promise = page
                        .call2(&JsValue::NULL, &out.body.to_string().into(), &signal)
                        .map(|p| Promise::resolve(&p))
                        .map_err(|_| SendError::Unsendable)?;
                    if let Some(f) = self.fetched(promise, within_ms, abort).await? {
                        return Ok(WebReply::Fetched(f));
                    }
                }
                let engine = self.engine.as_ref().ok_or(SendError::Unsendable)?;
                let id = format!(
                    "chatcmpl-{:012x}",
                    (js_sys::Math::random() * 2f64.powi(48)) as u64
                );
                let created = (js_sys::Date::now() / 1000.0) as u64;
                let reply = EngineReply::start(engine, out.body, id, created).await;
                Ok(WebReply::Engine(reply))
            }
        }
    }

    async fn sleep(&self, ms: f64) {
        sleep(ms).await;
    }

    fn now(&self) -> f64 {
        js_sys::Date::now()
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }
}
