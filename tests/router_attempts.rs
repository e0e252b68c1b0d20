//! The router's whole attempt loop, natively, on a virtual clock against providers that fail on
//! command (tests/routes): key rotation, retries with backoff and Retry-After, failover before
//! the first byte and mid-stream (one continuous stream), the client's own errors, the 503 when
//! nothing can answer, breakers, rate limits, a client that goes away, and metrics.

mod routes;

use std::rc::Rc;

use candlelight::router::{Mode, RateLimit, RouterConfig, Service};
use routes::{
    ask, provider_config, words, Fault, LocalRoute, MemoryAnswers, Provider, Recorder, Routes, Sim,
};
use serde_json::json;

/// The browser tests' setup: p1 (keys sk-bad, then sk-a; two retries) before p2 (no retries).
struct Setup {
    routes: Routes,
    service: Service<Rc<MemoryAnswers>>,
    p1: Rc<Provider>,
    p2: Rc<Provider>,
}

fn setup(edit: impl FnOnce(&mut RouterConfig)) -> Setup {
    let (p1, p2) = (Provider::new("p1", &["sk-a"]), Provider::new("p2", &[]));
    let mut config = RouterConfig {
        mode: Mode::RemoteOnly,
        providers: vec![
            provider_config(&p1, &["sk-bad", "sk-a"], 2),
            provider_config(&p2, &[], 0),
        ],
        ..RouterConfig::default()
    };
    config.retry.base_ms = 50.0;
    config.retry.cap_ms = 200.0;
    config.retry.max_wait_ms = 3000.0;
    edit(&mut config);
    let sim = Sim::new();
    let service = Service::new(config, sim.now(), Rc::new(MemoryAnswers::default())).unwrap();
    Setup {
        routes: Routes {
            sim,
            providers: vec![p1.clone(), p2.clone()],
            local: LocalRoute::None,
            refused: Vec::new(),
            local_answers: 0.into(),
        },
        service,
        p1,
        p2,
    }
}

impl Setup {
    fn send(&self, body: &str) -> Recorder {
        self.send_as(body, Recorder::default())
    }

    fn send_as(&self, body: &str, mut client: Recorder) -> Recorder {
        self.routes.sim.block_on(async {
            self.service.answer(body, &self.routes, &mut client).await;
        });
        client
    }

    fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self.service.metrics();
        let line = match labels {
            "" => format!("{name} "),
            _ => format!("{name}{{{labels}}} "),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0.0, |v| v.parse().unwrap())
    }
}

#[test]
fn a_refused_key_rotates_to_the_next_and_the_ring_remembers() {
    let s = setup(|_| {});
    let r = s.send(&ask(json!({})));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.route(), "p1");
    let (chunks, done) = r.events();
    assert!(done && r.closed);
    assert_eq!(r.content(), words(8));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 8);
    let auths: Vec<_> = s.p1.seen().iter().map(|x| x.auth.clone()).collect();
    assert_eq!(auths, [Some("sk-bad".into()), Some("sk-a".into())]);
    s.send(&ask(json!({})));
    assert_eq!(
        s.p1.seen()[2].auth.as_deref(),
        Some("sk-a"),
        "the refused key is not tried again"
    );
    assert_eq!(
        s.metric(
            "candlelight_requests_total",
            "route=\"p1\",outcome=\"key_rejected\""
        ),
        1.0
    );
}

#[test]
fn retry_after_and_server_busy_are_retried_on_the_same_provider() {
    let s = setup(|_| {});
    s.p1.faults(&[Fault::RateLimited, Fault::Busy]);
    let t0 = s.routes.sim.now();
    let r = s.send(&ask(json!({})));
    assert_eq!(r.route(), "p1");
    assert_eq!(r.content(), words(8));
    let seen = s.p1.seen();
    let faults: Vec<_> = seen[1..].iter().map(|x| x.fault).collect();
    assert_eq!(faults, [Some(Fault::RateLimited), Some(Fault::Busy), None]);
    assert!(
        seen[2].at - seen[1].at >= 1000.0,
        "Retry-After: 1 was honoured"
    );
    // Full jitter on the second wait: 0.5 (this test's random number) of 50 ms × 2¹.
    assert_eq!(seen[3].at - seen[2].at, 50.0);
    assert!(s.routes.sim.now() - t0 < 2000.0);
    assert!(s.p2.seen().is_empty());
}

#[test]
fn busy_past_its_retries_or_silent_before_the_first_byte_fails_over() {
    let s = setup(|_| {});
    s.p1.faults(&[Fault::Busy, Fault::Busy, Fault::Busy]);
    let r = s.send(&ask(json!({})));
    assert_eq!(r.route(), "p2");
    assert_eq!(r.content(), words(8));
    assert_eq!(
        s.p1.seen().len(),
        4,
        "a refused key, then the first try and two retries"
    );
    assert_eq!(
        s.metric("candlelight_failovers_total", "from=\"p1\",reason=\"busy\""),
        1.0
    );

    let s = setup(|_| {});
    s.p1.faults(&[Fault::Hang, Fault::Hang, Fault::Hang]);
    let t0 = s.routes.sim.now();
    let r = s.send(&ask(json!({})));
    assert_eq!(r.route(), "p2", "no first byte within the deadline");
    assert_eq!(r.content(), words(8));
    // Each silent try costs its deadline (the larger of connect and first byte).
    assert!(s.routes.sim.now() - t0 >= 3.0 * 2000.0);
}

#[test]
fn a_stream_that_breaks_mid_way_continues_on_the_next_provider_as_one_stream() {
    for fault in [
        Fault::Stall(3),
        Fault::Cut(3),
        Fault::Malformed(3),
        Fault::ErrorEvent(3),
        Fault::NoDone,
    ] {
        let s = setup(|_| {});
        s.p1.faults(&[fault]);
        let r = s.send(&ask(json!({})));
        assert_eq!(r.status, Some(200), "{fault:?}");
        assert_eq!(r.route(), "p1", "{fault:?}: the stream started on p1");
        let (chunks, done) = r.events();
        assert!(done, "{fault:?}: the stream ends with [DONE]");
        let expected = match fault {
            Fault::NoDone => 8,
            _ => 3,
        };
        assert_eq!(
            r.content(),
            words(8),
            "{fault:?}: nothing lost, nothing twice"
        );
        let ids: std::collections::BTreeSet<_> =
            chunks.iter().map(|c| c["id"].to_string()).collect();
        assert_eq!(ids.len(), 1, "{fault:?}: one stream id");
        let roles = chunks
            .iter()
            .filter(|c| !c["choices"][0]["delta"]["role"].is_null())
            .count();
        assert_eq!(roles, 1, "{fault:?}: one role chunk");
        assert_eq!(
            chunks.last().unwrap()["usage"]["completion_tokens"],
            8,
            "{fault:?}"
        );
        let cont = s.p2.seen();
        assert_eq!(cont.len(), 1, "{fault:?}");
        let last = &cont[0].body["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            *last,
            json!({"role": "assistant", "content": words(expected), "prefix": true}),
            "{fault:?}"
        );
    }
}

#[test]
fn whole_answers_and_the_clients_own_errors_pass_through() {
    let s = setup(|_| {});
    let r = s.send(&ask(json!({"stream": false})));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], words(8));

    s.p1.faults(&[Fault::BadRequest]);
    let r = s.send(&ask(json!({"stream": false})));
    assert_eq!(
        r.status,
        Some(400),
        "a client error is the client's, from the provider"
    );
    assert_eq!(r.route(), "p1");
    assert_eq!(r.json()["error"]["param"], "messages");
    assert!(
        s.p2.seen().is_empty(),
        "another provider would say the same"
    );

    let r = s.send("not json");
    assert_eq!((r.status, r.route()), (Some(400), "router"));
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
}

#[test]
fn with_nowhere_left_the_503_arrives_with_retry_after_or_ends_the_stream() {
    let mut s = setup(|c| c.providers.truncate(1));
    s.routes.refused.push(s.p1.base_url.clone());
    let r = s.send(&ask(json!({})));
    assert_eq!(r.status, Some(503));
    assert_eq!(r.route(), "none");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.json()["error"]["type"], "server_busy");
    assert_eq!(r.json()["error"]["code"], "no_route_available");
    assert_eq!(s.metric("candlelight_unanswered_total", ""), 1.0);

    // Mid-stream with nowhere to go: the error is the stream's last event.
    let s = setup(|c| c.providers.truncate(1));
    s.p1.faults(&[Fault::Cut(2)]);
    let r = s.send(&ask(json!({})));
    assert_eq!(r.status, Some(200));
    let (chunks, done) = r.events();
    assert!(!done && r.closed);
    assert_eq!(
        chunks.last().unwrap()["error"]["code"],
        "no_route_available"
    );
    assert_eq!(r.content(), words(2));
}

#[test]
fn every_key_refused_fails_over_and_an_empty_balance_benches_a_key() {
    let s = setup(|c| c.providers[0].keys.truncate(1));
    let r = s.send(&ask(json!({})));
    assert_eq!(
        r.route(),
        "p2",
        "sk-bad is the only key: the provider is out"
    );
    // Key sk-a is out of balance, and sk-bad refused: nothing is left on p1.
    let s = setup(|_| {});
    s.p1.faults(&[Fault::NoBalance]);
    let r = s.send(&ask(json!({})));
    assert_eq!(r.route(), "p2");
    assert_eq!(s.p1.seen().len(), 2);
    let r = s.send(&ask(json!({})));
    assert_eq!(r.route(), "p2", "both keys are benched");
    assert_eq!(s.p1.seen().len(), 2);
}

#[test]
fn an_open_breaker_skips_the_provider_until_it_reopens() {
    let s = setup(|c| {
        c.breaker.failures = 1;
        c.breaker.open_ms = 30_000.0;
        c.providers[0].max_retries = 0;
    });
    s.p1.faults(&[Fault::Busy]);
    assert_eq!(s.send(&ask(json!({}))).route(), "p2");
    let tried = s.p1.seen().len();
    assert_eq!(s.send(&ask(json!({}))).route(), "p2");
    assert_eq!(
        s.p1.seen().len(),
        tried,
        "the open circuit keeps requests off p1"
    );
    s.routes.sim.block_on(s.routes.sim.sleep(30_001.0));
    assert_eq!(
        s.send(&ask(json!({}))).route(),
        "p1",
        "the half-open probe succeeds"
    );
}

#[test]
fn a_rate_limited_provider_is_waited_for_and_a_long_wait_is_a_503() {
    // p1 alone with its good key: a burst of one request, then `requests_per_s`.
    let limited = |requests_per_s| {
        setup(|c| {
            c.providers.truncate(1);
            c.providers[0].keys.remove(0);
            c.providers[0].rate = RateLimit {
                requests_per_s,
                burst: 1.0,
                max_concurrent: 4,
            };
        })
    };
    let s = limited(0.5);
    let t0 = s.routes.sim.now();
    assert_eq!(s.send(&ask(json!({}))).route(), "p1");
    assert_eq!(s.send(&ask(json!({}))).route(), "p1");
    let waited = s.routes.sim.now() - t0;
    assert!(
        (1900.0..3000.0).contains(&waited),
        "waited {waited} ms for a token"
    );

    let s = limited(0.001);
    s.send(&ask(json!({})));
    let r = s.send(&ask(json!({})));
    assert_eq!(
        r.status,
        Some(503),
        "a token 1000 s away is past the 60 s wait"
    );
    assert!(r.header("retry-after").unwrap().parse::<f64>().unwrap() >= 900.0);
}

#[test]
fn a_client_that_goes_away_stops_the_answer_and_charges_no_provider() {
    let s = setup(|c| c.breaker.failures = 1);
    let client = Recorder {
        leave_after: Some(3),
        ..Recorder::default()
    };
    let r = s.send_as(&ask(json!({})), client);
    assert_eq!(r.route(), "p1");
    assert!(r.content().len() < words(8).len());
    assert_eq!(
        s.p1.cancelled.get(),
        1,
        "the provider's request was cancelled"
    );
    assert!(
        s.p2.seen().is_empty(),
        "nothing continues for a client that left"
    );
    assert_eq!(
        s.send(&ask(json!({}))).route(),
        "p1",
        "p1's breaker was not opened by it"
    );
}

#[test]
fn metrics_count_tries_failovers_and_tokens() {
    let s = setup(|_| {});
    s.send(&ask(json!({})));
    s.p1.faults(&[Fault::Busy, Fault::Busy, Fault::Busy]);
    s.send(&ask(json!({})));
    assert_eq!(
        s.metric("candlelight_requests_total", "route=\"p1\",outcome=\"ok\""),
        1.0
    );
    assert_eq!(
        s.metric(
            "candlelight_requests_total",
            "route=\"p1\",outcome=\"busy\""
        ),
        3.0
    );
    assert_eq!(
        s.metric("candlelight_requests_total", "route=\"p2\",outcome=\"ok\""),
        1.0
    );
    assert_eq!(
        s.metric("candlelight_failovers_total", "from=\"p1\",reason=\"busy\""),
        1.0
    );
    assert_eq!(
        s.metric(
            "candlelight_tokens_total",
            "route=\"p1\",kind=\"completion\""
        ),
        8.0
    );
    let models = s.service.models(Some("tiny"));
    assert_eq!(models["data"][0]["owned_by"], "local");
}

#[test]
fn hostile_sizes_and_echoed_keys_stop_at_the_router() {
    use candlelight::router::{MAX_ANSWER_BYTES, MAX_REQUEST_BYTES, REDACTED};
    let s = setup(|_| {});
    // A proxy echoing the Authorization header: the app gets the error without the key.
    s.p1.faults(&[Fault::EchoKey]);
    let r = s.send(&ask(json!({"stream": false})));
    assert_eq!((r.status, r.route()), (Some(400), "p1"));
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.contains("sk-a"), "{message}");
    assert!(message.contains(REDACTED), "{message}");
    // A whole answer that never ends is read up to MAX_ANSWER_BYTES, cancelled, and p2 answers.
    // (The flood is 20 MiB: past the cap.)
    const _: () = assert!(MAX_ANSWER_BYTES < 20 << 20);
    s.p1.faults(&[Fault::Flood]);
    let cancelled = s.p1.cancelled.get();
    let r = s.send(&ask(json!({"stream": false})));
    assert_eq!((r.status, r.route()), (Some(200), "p2"));
    assert_eq!(r.json()["choices"][0]["message"]["content"], words(8));
    assert_eq!(s.p1.cancelled.get(), cancelled + 1, "the flood was cut off");
    // A request body past MAX_REQUEST_BYTES is refused before it is parsed or sent anywhere.
    let seen = (s.p1.seen().len(), s.p2.seen().len());
    let huge = ask(json!({"stream": false, "user": "u".repeat(MAX_REQUEST_BYTES)}));
    let r = s.send(&huge);
    assert_eq!((r.status, r.route()), (Some(413), "router"));
    assert_eq!(r.json()["error"]["code"], "request_too_large");
    assert_eq!((s.p1.seen().len(), s.p2.seen().len()), seen);
}

#[test]
fn a_stream_that_breaks_twice_continues_from_the_original_request() {
    let p3 = Provider::new("p3", &[]);
    let mut s = setup(|c| {
        c.providers.push(provider_config(&p3, &[], 0));
    });
    s.routes.providers.push(p3.clone());
    s.p1.faults(&[Fault::Cut(3)]);
    s.p2.faults(&[Fault::Cut(2)]);
    let r = s.send(&ask(json!({"max_tokens": 100})));
    assert_eq!(r.status, Some(200));
    assert!(r.events().1, "the stream ends with [DONE]");
    assert_eq!(r.content(), words(8), "nothing lost, nothing twice");
    let last = p3.seen().pop().expect("p3 finished the answer").body;
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "one prefix message: {messages:?}");
    assert_eq!(messages[1]["content"], words(5));
    assert_eq!(messages[1]["prefix"], true);
    assert_eq!(last["max_tokens"], 95, "100 less the 5 words sent");
}
