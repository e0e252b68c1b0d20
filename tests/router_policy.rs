//! The router's policy, branch by branch: what counts as busy, backoff bounds and Retry-After,
//! breaker transitions, the token bucket and concurrency cap, key rotation and age warnings,
//! coalescing, failover order in every mode, the too-weak decision, the 503 answer, mid-stream
//! continuation, health levels, and the configuration as JavaScript writes it.

use candlelight::router::*;
use serde_json::json;

fn provider(name: &str, keys: &[&str]) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        base_url: format!("https://{name}.example/v1"),
        keys: keys
            .iter()
            .map(|k| ApiKey {
                key: k.to_string(),
                created_ms: None,
            })
            .collect(),
        ..ProviderConfig::default()
    }
}

fn router(mode: Mode, local: Local, providers: Vec<ProviderConfig>) -> Router {
    let mut r = Router::new(
        RouterConfig {
            mode,
            providers,
            ..RouterConfig::default()
        },
        0.0,
    )
    .unwrap();
    r.set_local(local);
    r
}

const CAPABLE: Local = Local {
    ready: true,
    capable: true,
};
const WEAK: Local = Local {
    ready: true,
    capable: false,
};

fn http(status: u16, body: &str) -> Verdict {
    classify(&Signal::Http {
        status,
        body,
        retry_after_ms: None,
    })
}

#[test]
fn every_busy_signal_is_busy_and_the_rest_are_not() {
    for status in [429, 500, 502, 503, 504, 408] {
        assert_eq!(
            http(status, ""),
            Verdict::Busy {
                retry_after_ms: None
            },
            "{status}"
        );
    }
    let deepseek_busy =
        r#"{"error":{"message":"Server busy, please try again later.","type":"server_error"}}"#;
    assert_eq!(
        http(200, deepseek_busy),
        Verdict::Busy {
            retry_after_ms: None
        },
        "a busy error body on a 200"
    );
    assert_eq!(
        http(529, "Overloaded"),
        Verdict::Busy {
            retry_after_ms: None
        }
    );
    assert_eq!(http(501, "not implemented"), Verdict::Failed);
    for s in [
        Signal::Refused,
        Signal::Cut,
        Signal::NoFirstByte,
        Signal::Stalled,
    ] {
        assert_eq!(
            classify(&s),
            Verdict::Busy {
                retry_after_ms: None
            },
            "{s:?}"
        );
    }
    assert_eq!(classify(&Signal::Malformed), Verdict::Failed);
    assert_eq!(
        classify(&Signal::Http {
            status: 429,
            body: "",
            retry_after_ms: Some(7000.0)
        }),
        Verdict::Busy {
            retry_after_ms: Some(7000.0)
        }
    );
    assert_eq!(http(401, ""), Verdict::KeyRejected { quota: false });
    assert_eq!(http(403, ""), Verdict::KeyRejected { quota: false });
    assert_eq!(
        http(402, r#"{"error":{"message":"Insufficient Balance"}}"#),
        Verdict::KeyRejected { quota: true }
    );
    assert_eq!(
        http(429, r#"{"error":{"code":"insufficient_quota"}}"#),
        Verdict::KeyRejected { quota: true }
    );
    for status in [400, 404, 413, 422] {
        assert_eq!(http(status, ""), Verdict::ClientError, "{status}");
    }
    assert_eq!(
        http(
            200,
            r#"{"choices":[{"message":{"content":"the server is busy today"}}]}"#
        ),
        Verdict::Ok,
        "busy words in an answer are an answer"
    );
}

#[test]
fn retries_back_off_with_full_jitter_honour_retry_after_and_give_up() {
    let mut r = router(
        Mode::RemoteOnly,
        Local::default(),
        vec![ProviderConfig {
            max_retries: 3,
            ..provider("a", &[])
        }],
    );
    let busy = Verdict::Busy {
        retry_after_ms: None,
    };
    let go = |r: &mut Router| match r.choose(0.0, &[]) {
        Choice::Go(t) => t,
        other => panic!("{other:?}"),
    };
    // base 500 ms, cap 8 s: try n waits unit × min(cap, 500 × 2^n).
    let t = go(&mut r);
    assert_eq!(
        r.report(t, busy, 0, 0.0, 0.0),
        Next::Retry { after_ms: 0.0 }
    );
    let t = go(&mut r);
    assert_eq!(r.report(t, Verdict::Ok, 0, 0.0, 0.5), Next::Done);
    let t = go(&mut r);
    assert_eq!(
        r.report(t, busy, 2, 0.0, 0.999),
        Next::Retry {
            after_ms: 2000.0 * 0.999
        }
    );
    let t = go(&mut r);
    assert_eq!(
        r.report(
            t,
            Verdict::Busy {
                retry_after_ms: Some(4000.0)
            },
            1,
            0.0,
            0.1
        ),
        Next::Retry { after_ms: 4000.0 },
        "Retry-After wins over backoff"
    );
    let t = go(&mut r);
    assert_eq!(r.report(t, Verdict::Ok, 0, 0.0, 0.5), Next::Done);
    let t = go(&mut r);
    assert_eq!(
        r.report(
            t,
            Verdict::Busy {
                retry_after_ms: Some(60_000.0)
            },
            0,
            0.0,
            0.1
        ),
        Next::FailOver,
        "a wait past maxWaitMs fails over"
    );
    let t = go(&mut r);
    assert_eq!(r.report(t, Verdict::Ok, 0, 0.0, 0.5), Next::Done);
    let t = go(&mut r);
    assert_eq!(
        r.report(t, busy, 3, 0.0, 0.5),
        Next::FailOver,
        "max retries spent"
    );
    for n in 0..40 {
        let ceiling = (500.0 * 2f64.powi(n)).min(8000.0);
        assert!(candlelight::retry::backoff_ms(n as u32, 500.0, 8000.0, 0.999_999) <= ceiling);
    }
}

#[test]
fn the_breaker_opens_probes_half_open_and_closes_or_reopens() {
    let policy = BreakerPolicy {
        failures: 3,
        open_ms: 30_000.0,
    };
    let mut b = Breaker::new();
    for t in 0..2 {
        b.failure(t as f64, &policy);
        assert_eq!(
            b.admit(t as f64),
            Admission::Allowed,
            "closed below the threshold"
        );
    }
    b.success();
    assert_eq!(
        b,
        Breaker::Closed { failures: 0 },
        "a success resets the count"
    );
    for _ in 0..3 {
        b.failure(1000.0, &policy);
    }
    assert_eq!(b, Breaker::Open { until_ms: 31_000.0 });
    assert_eq!(
        b.admit(11_000.0),
        Admission::Rejected {
            retry_in_ms: 20_000.0
        }
    );
    assert_eq!(b.admit(31_000.0), Admission::Probe, "half-open: one probe");
    assert!(
        matches!(b.admit(31_001.0), Admission::Rejected { .. }),
        "one probe at a time"
    );
    b.failure(31_500.0, &policy);
    assert_eq!(
        b,
        Breaker::Open { until_ms: 61_500.0 },
        "a failed probe reopens"
    );
    assert_eq!(b.admit(61_500.0), Admission::Probe);
    b.abandon_probe();
    assert_eq!(
        b.admit(61_600.0),
        Admission::Probe,
        "an abandoned probe lets the next request probe"
    );
    b.success();
    assert_eq!(
        b.admit(61_700.0),
        Admission::Allowed,
        "a good probe closes it"
    );
}

#[test]
fn the_token_bucket_and_the_concurrency_cap_hold_requests_back() {
    let mut l = Limiter::new(
        RateLimit {
            requests_per_s: 2.0,
            burst: 3.0,
            max_concurrent: 10,
        },
        0.0,
    );
    for _ in 0..3 {
        l.acquire(0.0).unwrap();
    }
    assert_eq!(
        l.acquire(0.0),
        Err(Some(500.0)),
        "the burst is spent: one token every 500 ms"
    );
    assert_eq!(l.acquire(250.0), Err(Some(250.0)));
    l.acquire(500.0).unwrap();
    l.acquire(10_000.0).unwrap();
    let mut c = Limiter::new(
        RateLimit {
            requests_per_s: 100.0,
            burst: 100.0,
            max_concurrent: 2,
        },
        0.0,
    );
    c.acquire(0.0).unwrap();
    c.acquire(0.0).unwrap();
    assert_eq!(c.acquire(0.0), Err(None), "two in flight");
    c.release();
    c.acquire(0.0).unwrap();
    assert_eq!(c.in_flight(), 2);
    // Through the router: a rate-limited provider asks the caller to wait, not to fail.
    let mut r = router(
        Mode::RemoteOnly,
        Local::default(),
        vec![ProviderConfig {
            rate: RateLimit {
                requests_per_s: 1.0,
                burst: 1.0,
                max_concurrent: 5,
            },
            ..provider("a", &[])
        }],
    );
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.choose(0.0, &[]), Choice::Wait { ms: 1000.0 });
    r.report(t, Verdict::Ok, 0, 0.0, 0.0);
    assert!(matches!(r.choose(1000.0, &[]), Choice::Go(_)));
}

#[test]
fn refused_keys_rotate_and_old_keys_are_flagged() {
    let day = 86_400_000.0;
    let mut p = provider("deepseek", &["k1", "k2", "k3"]);
    p.keys[1].created_ms = Some(0.0);
    p.keys[2].created_ms = Some(50.0 * day);
    let mut r = router(
        Mode::RemoteOnly,
        Local::default(),
        vec![p, provider("backup", &[])],
    );
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k1"));
    assert_eq!(
        r.report(t, Verdict::KeyRejected { quota: false }, 0, 0.0, 0.0),
        Next::Retry { after_ms: 0.0 },
        "401: the next key, at once"
    );
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k2"));
    assert_eq!(
        r.report(t, Verdict::KeyRejected { quota: true }, 0, 0.0, 0.0),
        Next::Retry { after_ms: 0.0 }
    );
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k3"));
    assert_eq!(
        r.report(t, Verdict::KeyRejected { quota: false }, 0, 0.0, 0.0),
        Next::FailOver,
        "no key left"
    );
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(
        t.route,
        Route::Remote(1),
        "a provider without keys left is skipped"
    );
    r.report(t, Verdict::Ok, 0, 0.0, 0.0);
    let Choice::Go(t) = r.choose(3_600_000.0, &[]) else {
        panic!()
    };
    assert_eq!(
        (t.route, r.api_key(&t)),
        (Route::Remote(0), Some("k2")),
        "a key out of quota comes back after an hour"
    );
    assert_eq!(
        r.stale_keys(100.0 * day),
        vec![("deepseek".to_string(), 1)],
        "older than 90 days"
    );
}

#[test]
fn identical_deterministic_requests_coalesce() {
    let a =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
    let b =
        json!({"temperature": 0, "messages": [{"content": "hi", "role": "user"}], "model": "m"});
    assert_eq!(
        coalesce_key(&a),
        coalesce_key(&b),
        "field order does not matter"
    );
    assert!(coalesce_key(&a).is_some());
    assert_ne!(
        coalesce_key(&a),
        coalesce_key(&json!({"model": "m", "messages": [], "temperature": 0}))
    );
    assert!(
        coalesce_key(&json!({"messages": [], "seed": 3, "temperature": 1})).is_some(),
        "a seed makes it deterministic"
    );
    assert_eq!(
        coalesce_key(&json!({"messages": [], "temperature": 1})),
        None,
        "samples are meant to differ"
    );
    let mut c = Coalescer::default();
    let k = coalesce_key(&a).unwrap();
    assert_eq!(c.join(&k), Role::Leader);
    assert_eq!(c.join(&k), Role::Follower(1));
    assert_eq!(c.join(&k), Role::Follower(2));
    assert_eq!(c.finish(&k), 2);
    assert_eq!(c.join(&k), Role::Leader, "a later request goes out again");
}

#[test]
fn failover_order_follows_the_mode() {
    let two = || vec![provider("a", &[]), provider("b", &[])];
    let (l, a, b) = (Route::Local, Route::Remote(0), Route::Remote(1));
    assert_eq!(
        router(Mode::Auto, CAPABLE, two()).order(),
        vec![l, a, b],
        "auto, capable device: local first"
    );
    assert_eq!(
        router(Mode::Auto, WEAK, two()).order(),
        vec![a, b, l],
        "auto, too weak: remote first, local last"
    );
    assert_eq!(router(Mode::LocalFirst, WEAK, two()).order(), vec![l, a, b]);
    assert_eq!(
        router(Mode::RemoteFirst, CAPABLE, two()).order(),
        vec![a, b, l]
    );
    assert_eq!(router(Mode::LocalOnly, CAPABLE, two()).order(), vec![l]);
    assert_eq!(router(Mode::RemoteOnly, CAPABLE, two()).order(), vec![a, b]);
    assert_eq!(
        router(Mode::Auto, Local::default(), two()).order(),
        vec![a, b],
        "no local model: remotes only"
    );
    assert_eq!(
        router(Mode::LocalOnly, Local::default(), two()).order(),
        vec![]
    );

    // A request fails over along that order, skipping routes it tried and open breakers.
    let mut r = router(Mode::RemoteFirst, CAPABLE, two());
    let Choice::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(t.route, a);
    assert_eq!(r.report(t, Verdict::Failed, 0, 0.0, 0.0), Next::FailOver);
    let Choice::Go(t) = r.choose(0.0, &[a]) else {
        panic!()
    };
    assert_eq!(t.route, b);
    let Choice::Go(t) = r.choose(0.0, &[a, b]) else {
        panic!()
    };
    assert_eq!(t.route, l);
    assert_eq!(r.report(t, Verdict::Failed, 0, 0.0, 0.0), Next::FailOver);
    assert!(matches!(
        r.choose(0.0, &[a, b, l]),
        Choice::Unavailable { .. }
    ));
    assert_eq!(
        r.report(
            Ticket {
                route: l,
                key: None,
                probe: false
            },
            Verdict::ClientError,
            0,
            0.0,
            0.0
        ),
        Next::Answer
    );
}

#[test]
fn nothing_to_answer_gives_a_503_with_retry_after() {
    let mut r = router(Mode::RemoteOnly, Local::default(), vec![provider("a", &[])]);
    for _ in 0..3 {
        let Choice::Go(t) = r.choose(1000.0, &[]) else {
            panic!()
        };
        r.report(
            t,
            Verdict::Busy {
                retry_after_ms: None,
            },
            9,
            1000.0,
            0.0,
        );
    }
    assert_eq!(
        r.choose(11_000.0, &[]),
        Choice::Unavailable {
            retry_after_ms: 20_000.0
        },
        "the breaker reopens in 20 s"
    );
    let (status, body, retry_after) = unavailable(20_000.0);
    assert_eq!((status, retry_after), (503, 20));
    assert_eq!(body["error"]["type"], "server_busy");
    assert_eq!(body["error"]["code"], "no_route_available");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("wait in the queue"));
    assert_eq!(unavailable(10.0).2, 1, "at least one second");
}

#[test]
fn health_falls_from_healthy_to_down() {
    let mut r = router(
        Mode::Auto,
        WEAK,
        vec![provider("a", &[]), provider("b", &[])],
    );
    assert_eq!(r.health(0.0), Health::Healthy);
    let open = |r: &mut Router, tried: &[Route]| {
        for _ in 0..3 {
            let Choice::Go(t) = r.choose(0.0, tried) else {
                panic!()
            };
            r.report(t, Verdict::Failed, 0, 0.0, 0.0);
        }
    };
    open(&mut r, &[]);
    assert_eq!(r.health(0.0), Health::Degraded);
    open(&mut r, &[Route::Remote(0)]);
    assert_eq!(
        r.health(0.0),
        Health::Critical,
        "only the local model is left"
    );
    r.set_local(Local::default());
    assert_eq!(r.health(0.0), Health::Down);
    assert_eq!(
        r.health(30_000.0),
        Health::Healthy,
        "the breakers reopen for a probe"
    );
}

#[test]
fn a_broken_stream_continues_from_its_partial_text() {
    let body = json!({"model": "deepseek-chat", "messages": [{"role": "user", "content": "Count"}], "max_tokens": 100, "stream": true});
    let next = continuation(&body, "1, 2, 3,", 7);
    let messages = next["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "1, 2, 3,", "prefix": true})
    );
    assert_eq!(next["max_tokens"], 93);
    assert_eq!(next["stream"], true);
    assert_eq!(
        continuation(&json!({"messages": [], "max_tokens": 5}), "x", 9)["max_tokens"],
        1
    );
}

#[test]
fn a_stream_and_its_continuation_reach_the_client_as_one() {
    let chunk = |id: &str, delta: serde_json::Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": if id == "a" { 1 } else { 2 }, "model": id,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut s = Stitch::default();
    let mut out = Vec::new();
    for c in [
        chunk("a", json!({"role": "assistant", "content": ""}), None),
        chunk("a", json!({"content": "Hel"}), None),
        chunk("a", json!({"content": "lo"}), None),
    ] {
        out.extend(s.pass(c));
    }
    // The first route breaks here; the second continues.
    let (partial, emitted) = s.broken();
    assert_eq!((partial.as_str(), emitted), ("Hello", 2));
    let usage = json!({"id": "b", "object": "chat.completion.chunk", "created": 2, "model": "b", "choices": [],
                       "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}});
    for c in [
        chunk("b", json!({"role": "assistant", "content": ""}), None),
        chunk("b", json!({"content": " wor"}), None),
        chunk("b", json!({"content": "ld"}), Some("stop")),
        usage,
    ] {
        out.extend(s.pass(c));
    }
    assert_eq!(
        out.len(),
        6,
        "the continuation's opening chunk is dropped: {out:#?}"
    );
    assert!(
        out.iter()
            .all(|c| c["id"] == "a" && c["created"] == 1 && c["model"] == "a"),
        "one stream's identity"
    );
    assert_eq!(
        out.iter()
            .filter(|c| c["choices"][0]["delta"].get("role").is_some())
            .count(),
        1,
        "one role"
    );
    let text: String = out
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello world");
    assert_eq!(s.text().0, "Hello world");
    assert_eq!(out[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        out[5]["usage"]["completion_tokens"], 4,
        "the tokens before the break count"
    );
    assert_eq!(out[5]["usage"]["total_tokens"], 13);
}

#[test]
fn a_kept_answer_replays_as_the_stream_or_the_whole_answer_it_was() {
    use candlelight::openai::sse::{SseDecoder, SseEvent};
    let ask = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let whole =
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
    assert_eq!(
        cache::key(&ask),
        cache::key(&whole),
        "a streamed and a whole request share the kept answer"
    );
    assert_eq!(
        cache::key(&json!({"messages": [], "temperature": 0.7})),
        None
    );

    // A stream seen by the client (with reasoning, as R1 sends it) becomes one chat.completion...
    let chunk = |delta: serde_json::Value, finish: Option<&str>| json!({"id": "x", "object": "chat.completion.chunk", "created": 5, "model": "r1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let mut seen = Stitch::default();
    for c in [
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"reasoning_content": "think"}), None),
        chunk(json!({"content": "An"}), None),
        chunk(json!({"content": "swer"}), None),
    ] {
        seen.pass(c);
    }
    assert_eq!(
        seen.completion(),
        None,
        "no finish reason yet: not a whole answer"
    );
    seen.pass(chunk(json!({}), Some("stop")));
    seen.pass(json!({"id": "x", "object": "chat.completion.chunk", "created": 5, "model": "r1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}));
    let kept = seen.completion().expect("a finished stream");
    assert_eq!(kept["object"], "chat.completion");
    assert_eq!(
        kept["choices"][0]["message"],
        json!({"role": "assistant", "content": "Answer", "reasoning_content": "think"})
    );
    assert_eq!(kept["choices"][0]["finish_reason"], "stop");
    assert_eq!(kept["usage"]["total_tokens"], 5);

    // ...which replays as the same whole answer, or as a stream that stitches back to it.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cache::replay(&kept, &whole)).unwrap(),
        kept
    );
    let events = SseDecoder::default()
        .push(cache::replay(&kept, &ask).as_bytes())
        .unwrap();
    assert_eq!(events.last(), Some(&SseEvent::Done));
    let mut again = Stitch::default();
    for e in &events {
        if let SseEvent::Data(d) = e {
            again.pass(serde_json::from_str(d).unwrap());
        }
    }
    assert_eq!(again.completion(), Some(kept.clone()));
    let without_usage = json!({"messages": [], "temperature": 0, "stream": true});
    assert!(
        !cache::replay(&kept, &without_usage).contains("usage"),
        "usage only when the request asks for it"
    );
}

#[test]
fn the_answer_cache_drops_the_least_recently_used_past_its_byte_cap() {
    let mut lru = cache::Lru::new(100);
    assert!(lru.insert("a".into(), 40, 1.0).is_empty());
    assert!(lru.insert("b".into(), 40, 2.0).is_empty());
    assert!(lru.touch("a", 3.0), "a is served: now the most recent");
    assert_eq!(
        lru.insert("c".into(), 40, 4.0),
        vec!["b".to_string()],
        "b is the least recently used"
    );
    assert_eq!((lru.bytes(), lru.len()), (80, 2));
    assert_eq!(
        lru.insert("d".into(), 90, 5.0),
        vec!["a".to_string(), "c".to_string()],
        "oldest first until it fits"
    );
    assert_eq!(lru.bytes(), 90);
    assert_eq!(
        lru.insert("huge".into(), 101, 6.0),
        Vec::<String>::new(),
        "over the cap alone: not kept"
    );
    assert!(!lru.contains("huge") && lru.contains("d"));
    assert_eq!(
        lru.insert("d".into(), 30, 7.0),
        Vec::<String>::new(),
        "kept again: its size is replaced"
    );
    assert_eq!(lru.bytes(), 30);
    assert!(!lru.touch("b", 8.0));
    // Entries found in storage at start count towards the cap.
    let mut restored = cache::Lru::new(100);
    restored.restore("old".into(), 70, 1.0);
    restored.restore("new".into(), 20, 9.0);
    assert_eq!(
        restored.insert("next".into(), 30, 10.0),
        vec!["old".to_string()]
    );
    // A cap lowered since: fit() drops the oldest until the rest fit.
    let mut lowered = cache::Lru::new(25);
    lowered.restore("x".into(), 20, 1.0);
    lowered.restore("y".into(), 20, 2.0);
    assert_eq!(lowered.fit(), vec!["x".to_string()]);
    assert!(lowered.fit().is_empty());
    assert_eq!(
        RouterConfig::default().cache_bytes,
        500_000_000,
        "500 MB unless configured"
    );
}

#[test]
fn the_device_is_too_weak_when_slow_or_short_of_room() {
    let model = ModelNeeds {
        file_bytes: 400e6,
        bytes_per_token: 380e6,
        stored: false,
    };
    let gpu = |bps: f64| GpuProfile {
        adapter: "test".into(),
        bytes_per_s: Some(bps),
        ..GpuProfile::default()
    };
    let fast = DeviceProfile {
        webgpu: Some(gpu(20e9)),
        cpu_bytes_per_s: Some(3e9),
        device_memory_gb: Some(8.0),
        storage_quota_bytes: Some(10e9),
        ..DeviceProfile::default()
    };
    match assess(&fast, &model, 8.0) {
        Capability::Capable {
            backend,
            tokens_per_s,
        } => {
            assert_eq!(backend, "gpu");
            assert!((tokens_per_s - 20e9 * 0.8 / 380e6).abs() < 1e-6);
        }
        other => panic!("{other:?}"),
    }
    let cpu_only = DeviceProfile {
        webgpu: None,
        ..fast.clone()
    };
    assert!(
        matches!(assess(&cpu_only, &model, 8.0), Capability::TooWeak { tokens_per_s: Some(t), .. } if (t - 3e9 * 0.8 / 380e6).abs() < 1e-6),
        "6.3 tok/s < 8"
    );
    assert!(assess(&cpu_only, &model, 5.0).is_capable());
    let full = DeviceProfile {
        storage_usage_bytes: Some(9.8e9),
        ..fast.clone()
    };
    assert!(
        matches!(assess(&full, &model, 1.0), Capability::TooWeak { reason, .. } if reason.starts_with("storage"))
    );
    assert!(
        assess(
            &full,
            &ModelNeeds {
                stored: true,
                ..model
            },
            1.0
        )
        .is_capable(),
        "a stored model needs no room"
    );
    let small = DeviceProfile {
        device_memory_gb: Some(0.5),
        ..fast.clone()
    };
    assert!(
        matches!(assess(&small, &model, 1.0), Capability::TooWeak { reason, .. } if reason.starts_with("memory"))
    );
    assert!(
        matches!(assess(&DeviceProfile::default(), &model, 1.0), Capability::TooWeak { reason, .. } if reason.starts_with("not measured"))
    );
}

#[test]
fn the_configuration_reads_as_javascript_writes_it() {
    let config: RouterConfig = serde_json::from_value(json!({
        "mode": "remote-first",
        "minLocalTokensPerS": 12,
        "providers": [{
            "name": "deepseek",
            "baseUrl": "https://api.deepseek.com/v1",
            "models": {"local": "deepseek-chat"},
            "keys": [{"key": "sk-1", "createdMs": 1700000000000.0}],
            "maxRetries": 1,
            "rate": {"requestsPerS": 2, "burst": 4, "maxConcurrent": 2},
            "deadlines": {"connectMs": 1000, "firstByteMs": 5000, "stallMs": 3000}
        }],
        "retry": {"baseMs": 250}
    }))
    .unwrap();
    assert_eq!(config.mode, Mode::RemoteFirst);
    assert_eq!(config.retry.base_ms, 250.0);
    assert_eq!(
        config.retry.cap_ms, 8000.0,
        "unnamed fields keep their defaults"
    );
    assert_eq!(config.providers[0].deadlines.stall_ms, 3000.0);
    assert_eq!(provider_model(&config, 0, "local"), "deepseek-chat");
    assert_eq!(provider_model(&config, 0, "other"), "other");
    config.validate().unwrap();
    let bad = |f: &dyn Fn(&mut RouterConfig)| {
        let mut c = config.clone();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert_eq!(
        bad(&|c| c.providers[0].base_url = "ftp://x".into()),
        ConfigError::BadUrl {
            name: "deepseek".into(),
            url: "ftp://x".into()
        }
    );
    assert!(matches!(
        bad(&|c| c.providers[0].rate.requests_per_s = 0.0),
        ConfigError::NotPositive {
            field: "rate.requestsPerS",
            ..
        }
    ));
    assert!(matches!(
        bad(&|c| c.providers.push(c.providers[0].clone())),
        ConfigError::Duplicate(_)
    ));
    assert!(matches!(
        bad(&|c| c.providers[0].name = " ".into()),
        ConfigError::Unnamed { index: 0 }
    ));
    assert!(matches!(
        bad(&|c| {
            c.providers.clear();
            c.mode = Mode::RemoteOnly
        }),
        ConfigError::NoProviders(Mode::RemoteOnly)
    ));
    assert!(matches!(
        bad(&|c| c.breaker.failures = 0),
        ConfigError::BadPolicy {
            field: "breaker.failures"
        }
    ));
    assert!(serde_json::from_value::<RouterConfig>(json!({"mode": "sometimes"})).is_err());
}

#[test]
fn metrics_render_in_the_prometheus_text_format() {
    let mut m = Metrics::new();
    m.tried("deepseek", "busy");
    m.tried("deepseek", "busy");
    m.tried("local", "ok");
    m.failed_over("deepseek", "busy");
    m.unanswered();
    m.tokens("local", 12, 30);
    m.timed("local", 0.3, Some(0.07));
    m.timed("local", 200.0, None);
    m.tried("odd \"name\"\n", "ok");
    let text = m.render();
    for line in [
        "# TYPE candlelight_requests_total counter",
        "candlelight_requests_total{route=\"deepseek\",outcome=\"busy\"} 2",
        "candlelight_requests_total{route=\"local\",outcome=\"ok\"} 1",
        "candlelight_requests_total{route=\"odd \\\"name\\\"\\n\",outcome=\"ok\"} 1",
        "candlelight_failovers_total{from=\"deepseek\",reason=\"busy\"} 1",
        "candlelight_unanswered_total 1",
        "candlelight_tokens_total{route=\"local\",kind=\"completion\"} 30",
        "# TYPE candlelight_request_duration_seconds histogram",
        "candlelight_request_duration_seconds_bucket{route=\"local\",le=\"0.25\"} 0",
        "candlelight_request_duration_seconds_bucket{route=\"local\",le=\"0.5\"} 1",
        "candlelight_request_duration_seconds_bucket{route=\"local\",le=\"120\"} 1",
        "candlelight_request_duration_seconds_bucket{route=\"local\",le=\"+Inf\"} 2",
        "candlelight_request_duration_seconds_sum{route=\"local\"} 200.3",
        "candlelight_request_duration_seconds_count{route=\"local\"} 2",
        "candlelight_time_to_first_token_seconds_bucket{route=\"local\",le=\"0.1\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // Every sample line is `name{labels} value` with a number for value.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
}
