//! The router's policy, branch by branch: what counts as busy, backoff bounds and Retry-After,
//! breaker transitions, the token bucket and concurrency cap, key rotation and age warnings,
//! failover order in every mode, the 503 answer and health levels. (The whole attempt loop
//! over these: tests/router_attempts.rs.)

mod routes;

use candlelight::router::*;
use routes::api_keys;

fn provider(name: &str, keys: &[&str]) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        base_url: format!("https://{name}.example/v1"),
        keys: api_keys(keys),
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
    assert_eq!(
        http(401, ""),
        Verdict::KeyRejected {
            why: Refusal::Invalid
        }
    );
    assert_eq!(
        http(403, ""),
        Verdict::KeyRejected {
            why: Refusal::Forbidden
        }
    );
    assert_eq!(
        http(402, r#"{"error":{"message":"Insufficient Balance"}}"#),
        Verdict::KeyRejected {
            why: Refusal::Quota
        }
    );
    assert_eq!(
        http(429, r#"{"error":{"code":"insufficient_quota"}}"#),
        Verdict::KeyRejected {
            why: Refusal::Quota
        }
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
        Decision::Go(t) => t,
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
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.choose(0.0, &[]), Decision::Wait { ms: 1000.0 });
    r.report(t, Verdict::Ok, 0, 0.0, 0.0);
    assert!(matches!(r.choose(1000.0, &[]), Decision::Go(_)));
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
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k1"));
    assert_eq!(
        r.report(
            t,
            Verdict::KeyRejected {
                why: Refusal::Invalid
            },
            0,
            0.0,
            0.0
        ),
        Next::Retry { after_ms: 0.0 },
        "401: the next key, at once"
    );
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k2"));
    assert_eq!(
        r.report(
            t,
            Verdict::KeyRejected {
                why: Refusal::Quota
            },
            0,
            0.0,
            0.0
        ),
        Next::Retry { after_ms: 0.0 }
    );
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(r.api_key(&t), Some("k3"));
    assert_eq!(
        r.report(
            t,
            Verdict::KeyRejected {
                why: Refusal::Invalid
            },
            0,
            0.0,
            0.0
        ),
        Next::FailOver,
        "no key left"
    );
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(
        t.route,
        Route::Remote(1),
        "a provider without keys left is skipped"
    );
    r.report(t, Verdict::Ok, 0, 0.0, 0.0);
    let Decision::Go(t) = r.choose(3_600_000.0, &[]) else {
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
    let Decision::Go(t) = r.choose(0.0, &[]) else {
        panic!()
    };
    assert_eq!(t.route, a);
    assert_eq!(r.report(t, Verdict::Failed, 0, 0.0, 0.0), Next::FailOver);
    let Decision::Go(t) = r.choose(0.0, &[a]) else {
        panic!()
    };
    assert_eq!(t.route, b);
    let Decision::Go(t) = r.choose(0.0, &[a, b]) else {
        panic!()
    };
    assert_eq!(t.route, l);
    assert_eq!(r.report(t, Verdict::Failed, 0, 0.0, 0.0), Next::FailOver);
    assert!(matches!(
        r.choose(0.0, &[a, b, l]),
        Decision::Unavailable { .. }
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
        let Decision::Go(t) = r.choose(1000.0, &[]) else {
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
        Decision::Unavailable {
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
            let Decision::Go(t) = r.choose(0.0, tried) else {
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
fn a_key_refused_with_403_comes_back_after_a_cool_down_and_one_refused_with_401_does_not() {
    use candlelight::router::FORBIDDEN_BENCH_MS;
    for (why, back) in [(Refusal::Forbidden, true), (Refusal::Invalid, false)] {
        let mut r = router(
            Mode::RemoteOnly,
            Local::default(),
            vec![provider("main", &["k1"]), provider("backup", &[])],
        );
        let Decision::Go(t) = r.choose(0.0, &[]) else {
            panic!()
        };
        assert_eq!(r.api_key(&t), Some("k1"));
        assert_eq!(
            r.report(t, Verdict::KeyRejected { why }, 0, 0.0, 0.0),
            Next::FailOver
        );
        let Decision::Go(t) = r.choose(FORBIDDEN_BENCH_MS - 1.0, &[]) else {
            panic!()
        };
        assert_eq!(t.route, Route::Remote(1), "{why:?}: still sitting out");
        r.report(t, Verdict::Ok, 0, 0.0, 0.0);
        let Decision::Go(t) = r.choose(FORBIDDEN_BENCH_MS + 1.0, &[]) else {
            panic!()
        };
        match back {
            true => assert_eq!(
                r.api_key(&t),
                Some("k1"),
                "{why:?}: back after the cool-down"
            ),
            false => assert_eq!(t.route, Route::Remote(1), "{why:?}: out for good"),
        }
    }
}
