//! The router as a service: one configuration's state (routes and their health, metrics,
//! requests in flight, the answer cache) answering `/v1/chat/completions` requests one body at a
//! time, through a [`Transport`] to the routes and a [`Client`] to the app. Identical
//! deterministic requests in flight go out once; a finished deterministic answer is cached.

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::{json, Value};

use super::cache::{self, AnswerCache, AnswerStorage};
use super::coalesce::{key as coalesce_key, Coalescer, Role};
use super::config::{ConfigError, RouterConfig};
use super::metrics::Metrics;
use super::routes::{Health, Local, Router};
use super::transport::{Client, Start, Transport};
use crate::openai::sse;

/// The largest request body taken: a long conversation with tools is well under 1 MiB. The
/// service worker stops reading a body at this size too, so a page cannot make it hold more.
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// The router for one configuration.
pub struct Service<S> {
    pub(super) router: RefCell<Router>,
    pub(super) metrics: RefCell<Metrics>,
    coalescer: RefCell<Coalescer>,
    cache: RefCell<CacheState<S>>,
    /// The configuration's model fingerprint, hashed once: every cache key starts from it.
    fingerprint: sha2::Sha256,
}

/// The answer cache, opened at first use.
enum CacheState<S> {
    Closed(S),
    Opening,
    Open(Rc<AnswerCache<S>>),
    /// It would not open (private mode, no IndexedDB), or the cap is 0: the router works on
    /// without it.
    Off,
}

/// What answered a request: the route, and the whole answer (a `chat.completion`) when one
/// finished; `fresh` is false for an answer that came from the cache.
pub(super) struct Answered {
    pub route: String,
    pub completion: Option<Value>,
    pub fresh: bool,
}

/// The client's end with what has reached it so far.
pub(super) struct Answering<'a, C> {
    pub client: &'a mut C,
    /// The status and headers went out (and maybe part of a stream).
    pub started: bool,
}

impl<C: Client> Answering<'_, C> {
    /// Starts a stream from `route`.
    pub fn stream(&mut self, route: &str) {
        self.client.start(&Start {
            status: 200,
            stream: true,
            route,
            retry_after_s: None,
        });
        self.started = true;
    }

    /// A whole answer at once.
    pub fn whole(&mut self, status: u16, body: &Value, route: &str, retry_after_s: Option<u64>) {
        self.client.start(&Start {
            status,
            stream: false,
            route,
            retry_after_s,
        });
        self.started = true;
        self.client.write(&body.to_string());
        self.client.close();
    }

    /// A whole answer sent as `request` wants it: a stream of chunks or one JSON body.
    pub fn replay(&mut self, answer: &Value, request: &Value, route: &str) {
        if request.get("stream").and_then(Value::as_bool) == Some(true) {
            self.stream(route);
            self.client.write(&cache::replay(answer, request));
            self.client.close();
        } else {
            self.whole(200, answer, route, None);
        }
    }

    pub fn write_chunk(&mut self, chunk: &Value) {
        self.client.write(&sse::encode(&chunk.to_string()));
    }
}

impl<S: AnswerStorage> Service<S> {
    /// A router for `config`; `storage` holds the answer cache (opened at first use).
    pub fn new(config: RouterConfig, now_ms: f64, storage: S) -> Result<Self, ConfigError> {
        let cache = match config.cache_bytes {
            0 => CacheState::Off,
            _ => CacheState::Closed(storage),
        };
        use sha2::Digest;
        let fingerprint = sha2::Sha256::new()
            .chain_update(config.fingerprint().as_bytes())
            .chain_update([0]);
        Ok(Self {
            fingerprint,
            router: RefCell::new(Router::new(config, now_ms)?),
            metrics: RefCell::new(Metrics::new()),
            coalescer: RefCell::new(Coalescer::default()),
            cache: RefCell::new(cache),
        })
    }

    /// What the local engine can do now.
    pub fn set_local(&self, local: Local) {
        self.router.borrow_mut().set_local(local);
    }

    /// `/v1/models`: the local model (when one is ready) and each provider's mapped models.
    pub fn models(&self, local_id: Option<&str>) -> Value {
        let router = self.router.borrow();
        let mut data: Vec<Value> = local_id
            .into_iter()
            .map(|id| json!({"id": id, "object": "model", "owned_by": "local"}))
            .collect();
        for p in &router.config().providers {
            for (alias, model) in &p.models {
                data.push(json!({"id": alias, "object": "model", "owned_by": p.name, "provider_model": model}));
            }
        }
        json!({"object": "list", "data": data})
    }

    /// `/v1/metrics`: Prometheus text format.
    pub fn metrics(&self) -> String {
        self.metrics.borrow().render()
    }

    pub fn health(&self, now_ms: f64) -> Health {
        self.router.borrow().health(now_ms)
    }

    /// Answers one chat-completions request body to `client`; resolves when the answer is
    /// complete (or the client has gone).
    pub async fn answer<T: Transport, C: Client>(&self, body: &str, transport: &T, client: &mut C) {
        let mut out = Answering {
            client,
            started: false,
        };
        if body.len() > MAX_REQUEST_BYTES {
            let e = json!({"error": {"message": format!("the request body is over {MAX_REQUEST_BYTES} bytes"), "type": "invalid_request_error", "param": null, "code": "request_too_large"}});
            return out.whole(413, &e, "router", None);
        }
        let request: Value = match serde_json::from_str(body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                let e = json!({"error": {"message": "the request body is not a JSON object", "type": "invalid_request_error", "param": null, "code": null}});
                return out.whole(400, &e, "router", None);
            }
        };
        // Identical deterministic requests in flight: the first goes out, the others take its
        // answer.
        let key = coalesce_key(&request);
        let mut leader = false;
        if let Some(k) = &key {
            let role = self.coalescer.borrow_mut().join(k);
            match role {
                Role::Leader => leader = true,
                Role::Follower(follow) => {
                    if let Some((route, answer)) = follow.await {
                        self.metrics.borrow_mut().coalesced();
                        return out.replay(&answer, &request, &route);
                    }
                    // The first got no whole answer: this one goes out itself.
                }
            }
        }
        let answered = self
            .route(request, transport, &mut out, key.as_deref())
            .await;
        let whole = answered
            .as_ref()
            .and_then(|a| a.completion.clone().map(|c| (a.route.clone(), c)));
        if let (true, Some(k)) = (leader, &key) {
            self.coalescer.borrow_mut().finish(k, whole);
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
            self.cache_answer(k, c, transport.now()).await;
        }
    }

    /// The answer cache, opened at first use; None when there is none.
    async fn answer_cache(&self) -> Option<Rc<AnswerCache<S>>> {
        let storage = {
            let mut state = self.cache.borrow_mut();
            match std::mem::replace(&mut *state, CacheState::Opening) {
                CacheState::Closed(storage) => storage,
                other => {
                    *state = other;
                    return match &*state {
                        CacheState::Open(cache) => Some(cache.clone()),
                        _ => None,
                    };
                }
            }
        };
        let cap = self.router.borrow().config().cache_bytes;
        let opened = AnswerCache::open(storage, cap).await.ok().map(Rc::new);
        *self.cache.borrow_mut() = match &opened {
            Some(cache) => CacheState::Open(cache.clone()),
            None => CacheState::Off,
        };
        opened
    }

    /// Where the answer to the request under coalescing `key` is cached: the key within this
    /// configuration's models (see [`RouterConfig::fingerprint`]).
    fn cache_key(&self, key: &str) -> String {
        use sha2::Digest;
        let digest = self
            .fingerprint
            .clone()
            .chain_update(key.as_bytes())
            .finalize();
        crate::hex::encode(&digest)
    }

    /// Caches a finished deterministic answer for the day nothing can answer.
    async fn cache_answer(&self, key: &str, answer: &Value, now: f64) {
        let key = &self.cache_key(key);
        if answer
            .pointer("/choices/0/finish_reason")
            .is_none_or(Value::is_null)
        {
            return;
        }
        if let Some(cache) = self.answer_cache().await {
            if let Ok(evicted) = cache.put(key, answer, now).await {
                let mut metrics = self.metrics.borrow_mut();
                metrics.cache("kept", 1);
                metrics.cache("evicted", evicted as u64);
            }
        }
    }

    /// The cached answer to the request under `key`, if any.
    pub(super) async fn cached_answer(&self, key: &str, now: f64) -> Option<Value> {
        let key = self.cache_key(key);
        self.answer_cache().await?.get(&key, now).await
    }

    /// The router's configuration.
    pub fn config(&self) -> RouterConfig {
        self.router.borrow().config().clone()
    }
}
