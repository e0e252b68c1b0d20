//! The router's local route and its last resorts, natively on a virtual clock (tests/routes):
//! a real model in this thread answering as a provider would (streamed, whole, refusing a bad
//! request, taking requests one at a time), a page's engine that falls silent mid-answer,
//! identical deterministic requests in flight going out once, and cached answers served when
//! every route fails; tool calls answered locally, kept and replayed, or by a provider when the
//! local model cannot make them.

mod common;
mod routes;

use std::rc::Rc;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::Architecture;
use candlelight::openai::{LocalModel, SharedModel};
use candlelight::router::{Deadlines, Local, Mode, RouterConfig, Service};
use candlelight_fixtures::{build, FixtureSpec, Quant};
use routes::{
    ask, provider_config, words, Fault, LocalRoute, MemoryAnswers, Provider, Recorder, Routes, Sim,
    Task,
};
use serde_json::json;

fn engine() -> Rc<SharedModel> {
    engine_of(FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0))
}

fn engine_of(spec: FixtureSpec) -> Rc<SharedModel> {
    let bytes = build(&spec).to_bytes();
    let (store, file) = common::store(&bytes);
    let cpu = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    SharedModel::new(LocalModel::new(spec.name, &file, Box::new(cpu)).unwrap())
}

struct Setup {
    routes: Routes,
    answers: Rc<MemoryAnswers>,
    p1: Rc<Provider>,
    p2: Rc<Provider>,
}

impl Setup {
    fn new(local: LocalRoute) -> Setup {
        let (p1, p2) = (Provider::new("p1", &["sk-a"]), Provider::new("p2", &[]));
        Setup {
            routes: Routes {
                sim: Sim::new(),
                providers: vec![p1.clone(), p2.clone()],
                local,
                refused: vec!["https://gone.example".into()],
                local_answers: 0.into(),
            },
            answers: Rc::new(MemoryAnswers::default()),
            p1,
            p2,
        }
    }

    /// A router (a new configuration: fresh health, the same answer cache).
    fn service(&self, edit: impl FnOnce(&mut RouterConfig)) -> Service<Rc<MemoryAnswers>> {
        let mut config = RouterConfig {
            mode: Mode::RemoteOnly,
            providers: vec![
                provider_config(&self.p1, &["sk-a"], 2),
                provider_config(&self.p2, &[], 0),
            ],
            ..RouterConfig::default()
        };
        config.retry.base_ms = 50.0;
        config.retry.cap_ms = 200.0;
        edit(&mut config);
        let service = Service::new(config, self.routes.sim.now(), self.answers.clone()).unwrap();
        let ready = !matches!(self.routes.local, LocalRoute::None);
        service.set_local(Local {
            ready,
            capable: true,
        });
        service
    }

    fn send(&self, service: &Service<Rc<MemoryAnswers>>, body: &str) -> Recorder {
        self.all(service, &[body]).pop().unwrap()
    }

    /// The requests at once.
    fn all(&self, service: &Service<Rc<MemoryAnswers>>, bodies: &[&str]) -> Vec<Recorder> {
        let tasks: Vec<Task<Recorder>> = bodies
            .iter()
            .map(|body| {
                let task = async move {
                    let mut r = Recorder::default();
                    service.answer(body, &self.routes, &mut r).await;
                    r
                };
                Box::pin(task) as Task<Recorder>
            })
            .collect();
        self.routes.sim.run(tasks)
    }
}

/// The same providers (names and models), unreachable: the network is down.
fn gone(c: &mut RouterConfig) {
    for p in &mut c.providers {
        p.base_url = format!("https://gone.example/{}/v1", p.name);
        p.max_retries = 0;
    }
}

#[test]
fn the_engine_in_this_thread_answers_the_local_route_streamed_and_whole() {
    let s = Setup::new(LocalRoute::Engine(engine()));
    let service = s.service(|c| c.mode = Mode::LocalFirst);
    let r = s.send(&service, &ask(json!({"max_tokens": 12, "temperature": 0})));
    assert_eq!((r.status, r.route()), (Some(200), "local"));
    let (chunks, done) = r.events();
    assert!(done && r.closed);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 12);
    assert_eq!(chunks[0]["model"], "tiny-qwen3-q8_0");
    assert!(s.p1.seen().is_empty());

    let whole = s.send(
        &service,
        &ask(json!({"max_tokens": 12, "temperature": 0, "stream": false})),
    );
    assert_eq!((whole.status, whole.route()), (Some(200), "local"));
    let answer = whole.json();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        r.content(),
        "greedy: the same text"
    );

    // A request the model refuses is the client's error, answered with the model's status.
    let bad = s.send(&service, &ask(json!({"temperature": 3})));
    assert_eq!((bad.status, bad.route()), (Some(400), "local"));
    assert_eq!(bad.json()["error"]["code"], "invalid_request");
    assert_eq!(bad.json()["error"]["param"], "temperature");
    assert!(s.p1.seen().is_empty(), "a remote would refuse it too");
    // One the model cannot do but a remote can goes on to the remote.
    let two = s.send(&service, &ask(json!({"n": 2})));
    assert_eq!((two.status, two.route()), (Some(200), "p1"));
}

#[test]
fn requests_to_the_engine_take_turns() {
    let s = Setup::new(LocalRoute::Engine(engine()));
    let service = s.service(|c| c.mode = Mode::LocalOnly);
    let (a, b) = (
        ask(json!({"max_tokens": 6, "temperature": 0})),
        ask(
            json!({"max_tokens": 5, "temperature": 0.5, "seed": 4, "messages": [{"role": "user", "content": "another"}]}),
        ),
    );
    let both = s.all(&service, &[&a, &b]);
    for (r, n) in both.iter().zip([6, 5]) {
        assert_eq!(r.route(), "local");
        assert!(r.events().1);
        assert_eq!(
            r.events().0.last().unwrap()["usage"]["completion_tokens"],
            n
        );
    }
    // Each alone gives the same text: neither answer stepped on the other's KV cache.
    let alone = s.send(&service, &b);
    assert_eq!(alone.content(), both[1].content());
}

#[test]
fn auto_on_a_weak_device_asks_the_remote_first_and_the_engine_when_it_is_busy() {
    let s = Setup::new(LocalRoute::Engine(engine()));
    let service = s.service(|c| c.mode = Mode::Auto);
    service.set_local(Local {
        ready: true,
        capable: false,
    });
    assert_eq!(s.send(&service, &ask(json!({}))).route(), "p1");
    s.p1.faults(&[Fault::Busy, Fault::Busy, Fault::Busy]);
    s.p2.faults(&[Fault::Busy]);
    let r = s.send(&service, &ask(json!({"max_tokens": 6, "temperature": 0})));
    assert_eq!(r.route(), "local");
    assert_eq!(
        r.events().0.last().unwrap()["usage"]["completion_tokens"],
        6
    );
}

#[test]
fn a_page_engine_that_falls_silent_mid_answer_continues_on_a_provider() {
    let page = Provider::new("page", &[]);
    page.faults(&[Fault::Stall(3)]);
    let s = Setup::new(LocalRoute::Page(page.clone()));
    let service = s.service(|c| {
        c.mode = Mode::LocalFirst;
        c.local_deadlines = Deadlines {
            connect_ms: 5000.0,
            first_byte_ms: 20_000.0,
            stall_ms: 1500.0,
        };
    });
    let t0 = s.routes.sim.now();
    let r = s.send(&service, &ask(json!({})));
    assert_eq!(r.route(), "local", "it started on the device");
    assert!(r.events().1, "the stream ended properly");
    assert_eq!(r.content(), words(8));
    assert!(
        s.routes.sim.now() - t0 < 2000.0,
        "within the stall deadline"
    );
    let cont = s.p1.seen();
    assert_eq!(cont.len(), 1, "the rest came from the provider");
    assert_eq!(cont[0].body["messages"][1]["prefix"], true);
    let ids: std::collections::BTreeSet<_> =
        r.events().0.iter().map(|c| c["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "one stream");
}

#[test]
fn identical_deterministic_requests_in_flight_go_out_once() {
    let s = Setup::new(LocalRoute::None);
    let service = s.service(|_| {});
    // The leader meets a 429 (Retry-After: 1), so the other two join while it waits.
    s.p1.faults(&[Fault::RateLimited]);
    let same =
        ask(json!({"temperature": 0, "messages": [{"role": "user", "content": "together"}]}));
    let whole = ask(
        json!({"temperature": 0, "messages": [{"role": "user", "content": "together"}], "stream": false}),
    );
    let trio = s.all(&service, &[&same, &same, &whole]);
    let faults: Vec<_> = s.p1.seen().iter().map(|x| x.fault).collect();
    assert_eq!(
        faults,
        [Some(Fault::RateLimited), None],
        "one request went out, and its retry"
    );
    assert_eq!(trio[0].content(), words(8));
    assert_eq!(trio[1].content(), words(8));
    assert!(trio[1].events().1);
    assert_eq!(
        trio[2].json()["choices"][0]["message"]["content"],
        words(8),
        "whole, from the stream"
    );
    assert!(trio.iter().all(|r| r.route() == "p1"));
    let metrics = service.metrics();
    assert!(
        metrics.contains("candlelight_coalesced_total 2"),
        "{metrics}"
    );
}

#[test]
fn cached_answers_are_served_when_every_route_fails() {
    let s = Setup::new(LocalRoute::None);
    let det =
        ask(json!({"temperature": 0, "messages": [{"role": "user", "content": "keep this"}]}));
    let first = s.send(&s.service(|_| {}), &det);
    assert_eq!(first.route(), "p1");
    assert_eq!(
        s.answers.entries.borrow().len(),
        1,
        "the finished answer is cached"
    );
    let sampled = ask(json!({"messages": [{"role": "user", "content": "not this"}]}));
    s.send(&s.service(|_| {}), &sampled);
    assert_eq!(
        s.answers.entries.borrow().len(),
        1,
        "a sampled answer is not"
    );

    // Nothing can answer now: the cached answer comes back, streamed or whole.
    let down = s.service(gone);
    let cached = s.send(&down, &det);
    assert_eq!((cached.status, cached.route()), (Some(200), "cache"));
    let (chunks, done) = cached.events();
    assert!(done);
    assert_eq!(cached.content(), first.content(), "the same answer");
    let roles = chunks
        .iter()
        .filter(|c| !c["choices"][0]["delta"]["role"].is_null())
        .count();
    assert_eq!(roles, 1);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 8);
    let whole = s.send(&down, &ask(json!({"temperature": 0, "messages": [{"role": "user", "content": "keep this"}], "stream": false})));
    assert_eq!(whole.route(), "cache");
    assert_eq!(
        whole.json()["choices"][0]["message"]["content"],
        first.content()
    );
    let refused = s.send(&down, &sampled);
    assert_eq!(refused.status, Some(503), "a sample is never replayed");
    assert!(down
        .metrics()
        .contains("candlelight_cache_total{event=\"served\"} 2"));
    // Another configuration's models never get this answer: p1 now asks another model.
    let other_model = s.service(|c| {
        c.providers[0]
            .models
            .insert("deepseek-chat".into(), "deepseek-reasoner".into());
        gone(c);
    });
    assert_eq!(s.send(&other_model, &det).status, Some(503));
    let renamed = s.service(|c| {
        c.providers[1].name = "p3".into();
        gone(c);
    });
    assert_eq!(s.send(&renamed, &det).status, Some(503));
}

#[test]
fn the_answer_cache_keeps_to_its_byte_cap_and_a_lowered_cap_applies_at_open() {
    let s = Setup::new(LocalRoute::None);
    let det = |i: usize| {
        ask(json!({"temperature": 0, "messages": [{"role": "user", "content": format!("q{i}")}]}))
    };
    let service = s.service(|_| {});
    for i in 0..3 {
        s.send(&service, &det(i));
    }
    let sizes: Vec<u64> = s.answers.entries.borrow().iter().map(|e| e.bytes).collect();
    assert_eq!(sizes.len(), 3);
    // A router opened with room for two answers drops the least recently used one first.
    let two = sizes.iter().take(2).sum::<u64>() + 1;
    let down = s.service(|c| {
        gone(c);
        c.cache_bytes = two;
    });
    assert_eq!(
        s.send(&down, &det(0)).status,
        Some(503),
        "the oldest went first"
    );
    // Served from the cache, q1 and then q2 are used again (a moment apart).
    let tick = || s.routes.sim.block_on(s.routes.sim.sleep(10.0));
    assert_eq!(s.send(&down, &det(1)).route(), "cache");
    tick();
    assert_eq!(s.send(&down, &det(2)).route(), "cache");
    tick();
    assert_eq!(s.answers.entries.borrow().len(), 2);
    // Answering under the cap makes room the same way: the new answer stays, the oldest goes.
    let live = s.service(|c| c.cache_bytes = two);
    s.send(&live, &det(3));
    let down = s.service(gone);
    assert_eq!(
        s.send(&down, &det(1)).status,
        Some(503),
        "q1 was the least recently used"
    );
    assert_eq!(s.send(&down, &det(2)).route(), "cache");
    assert_eq!(s.send(&down, &det(3)).route(), "cache");
    // A cap of 0 keeps nothing and never opens the storage.
    let commits = s.answers.commits.get();
    s.send(&s.service(|c| c.cache_bytes = 0), &det(7));
    assert_eq!(s.answers.commits.get(), commits);
}

fn tools() -> serde_json::Value {
    json!([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
        "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 14}},
        "required": ["zone"], "additionalProperties": false}}}])
}

/// The calls of a stream as a client joins them: (id, name, arguments).
fn calls_of(r: &Recorder) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for chunk in r.events().0 {
        for d in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = d["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push((
                    d["id"].as_str().unwrap().into(),
                    d["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i].2 += d["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    calls
}

#[test]
fn tool_calls_are_answered_locally_kept_and_replayed() {
    let s = Setup::new(LocalRoute::Engine(engine_of(FixtureSpec::tiny_tools(
        Quant::Q4_0,
    ))));
    let service = s.service(|c| {
        c.mode = Mode::LocalFirst;
        c.cache_bytes = 1 << 20;
    });
    let body = ask(
        json!({"tools": tools(), "tool_choice": "required", "temperature": 0, "max_tokens": 200}),
    );
    let r = s.send(&service, &body);
    assert_eq!(r.route(), "local");
    let calls = calls_of(&r);
    assert!(
        !calls.is_empty() && calls.iter().all(|c| c.1 == "get_time"),
        "{calls:?}"
    );
    let finish = r.events().0.iter().rev().find_map(|c| {
        c["choices"][0]["finish_reason"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(s.p1.seen().is_empty());

    // Every route down: the kept answer is replayed, calls and all, streamed and whole.
    let down = s.service(|c| {
        c.mode = Mode::RemoteOnly;
        c.cache_bytes = 1 << 20;
        gone(c);
    });
    let again = s.send(&down, &body);
    assert_eq!(again.route(), "cache");
    assert_eq!(calls_of(&again), calls);
    let mut whole: serde_json::Value = serde_json::from_str(&body).unwrap();
    whole["stream"] = json!(false);
    let kept = s.send(&down, &whole.to_string()).json();
    let message = &kept["choices"][0]["message"];
    assert_eq!(kept["choices"][0]["finish_reason"], "tool_calls");
    assert!(message["content"].is_null(), "{message}");
    assert_eq!(message["tool_calls"][0]["id"], calls[0].0.as_str());
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        calls[0].2.as_str()
    );
}

#[test]
fn tools_the_local_model_cannot_call_go_to_a_provider_or_are_refused_naming_tools() {
    let s = Setup::new(LocalRoute::Engine(engine()));
    let body = ask(
        json!({"tools": tools(), "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "parallel_tool_calls": false, "response_format": {"type": "text"}}),
    );
    // Auto and local-first: the local template takes no tools, so the provider answers, and
    // its call reaches the client unchanged; the request's fields reached it unchanged too.
    for mode in [Mode::Auto, Mode::LocalFirst] {
        let service = s.service(|c| c.mode = mode);
        let r = s.send(&service, &body);
        assert_eq!(r.route(), "p1", "{mode:?}");
        let n = s.p1.seen().len();
        let sent = &s.p1.seen()[n - 1].body;
        let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
        for field in [
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
        ] {
            assert_eq!(sent[field], asked[field], "{field} passed on unchanged");
        }
        assert_eq!(
            calls_of(&r),
            vec![(
                format!("call_p1_{n}"),
                "get_time".into(),
                "{\"from\":\"p1\"}".into()
            )]
        );
    }
    // Local only: nothing else can answer, so the client learns why.
    let service = s.service(|c| {
        c.mode = Mode::LocalOnly;
        c.providers.clear();
    });
    let r = s.send(&service, &body);
    assert_eq!((r.status, r.route()), (Some(400), "local"));
    let e = &r.json()["error"];
    assert_eq!(
        (e["code"].as_str(), e["param"].as_str(), e["type"].as_str()),
        (
            Some("unsupported_feature"),
            Some("tools"),
            Some("invalid_request_error")
        ),
        "{e}"
    );
}

#[test]
fn a_cache_write_that_fails_leaves_the_cache_as_it_was() {
    use candlelight::router::AnswerCache;
    let answers = Rc::new(MemoryAnswers::default());
    let answer =
        |t: &str| json!({"choices": [{"message": {"content": t}, "finish_reason": "stop"}]});
    let size = answer("aaaa").to_string().len() as u64;
    let sim = Sim::new();
    sim.block_on(async {
        let cache = AnswerCache::open(answers.clone(), size + 1).await.unwrap();
        cache.put("a", &answer("aaaa"), 1.0).await.unwrap();
        // b would push a out, but the write fails (quota): a stays, b is not claimed.
        answers.fail_next.set(true);
        assert!(cache.put("b", &answer("bbbb"), 2.0).await.is_err());
        assert_eq!(
            cache.get("a", 3.0).await,
            Some(answer("aaaa")),
            "a is still served"
        );
        assert_eq!(cache.get("b", 3.0).await, None);
        // The next try succeeds and pushes a out as it should.
        assert_eq!(cache.put("b", &answer("bbbb"), 4.0).await, Ok(1));
        assert_eq!(cache.get("a", 5.0).await, None);
        assert_eq!(cache.get("b", 5.0).await, Some(answer("bbbb")));
    });
    assert_eq!(answers.entries.borrow().len(), 1);
}
