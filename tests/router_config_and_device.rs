//! The router's configuration as JavaScript writes it, the too-weak decision on a device
//! profile, and the metrics in Prometheus' text format.

use candlelight::router::*;
use serde_json::json;

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

#[test]
fn keys_go_to_https_or_this_machine_only() {
    let with_url = |url: &str| {
        let mut c: RouterConfig = serde_json::from_value(serde_json::json!({
            "providers": [{"name": "p", "baseUrl": url, "keys": [{"key": "sk-1"}]}]
        }))
        .unwrap();
        c.providers[0].base_url = url.into();
        c.validate()
    };
    for ok in [
        "https://api.deepseek.com/v1",
        "http://127.0.0.1:8080/v1",
        "http://127.8.9.10/v1",
        "http://localhost:11434/v1",
        "HTTP://LOCALHOST/v1",
        "http://ollama.localhost/v1",
        "http://[::1]:8080/v1",
    ] {
        assert_eq!(with_url(ok), Ok(()), "{ok}");
    }
    for insecure in [
        "http://api.deepseek.com/v1",
        "http://192.168.1.10:8080/v1",
        "http://127.0.0.1.evil.example/v1",
        "http://localhost.evil.example/v1",
        "http://[::2]/v1",
        "https://user:pass@api.example/v1",
        "http://evil.example/?host=127.0.0.1",
    ] {
        assert!(
            matches!(with_url(insecure), Err(ConfigError::InsecureUrl { .. })),
            "{insecure}: {:?}",
            with_url(insecure)
        );
    }
    assert!(matches!(
        with_url("https:///v1"),
        Err(ConfigError::BadUrl { .. })
    ));
}

#[test]
fn a_provider_named_beyond_latin_1_gives_headers_a_response_takes() {
    let start = Start {
        status: 200,
        stream: true,
        route: "Zhipu 智谱 100%",
        retry_after_s: None,
    };
    let route = start
        .headers()
        .into_iter()
        .find(|(k, _)| *k == "x-candlelight-route")
        .unwrap()
        .1;
    assert!(route.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{route}");
    assert_eq!(route, "Zhipu %E6%99%BA%E8%B0%B1 100%25");
    assert_eq!(header_text("deepseek"), "deepseek");
}
