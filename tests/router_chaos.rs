//! Chaos: 1 000 requests, 50 at a time, through the router's whole attempt loop (the code the
//! service worker runs) while three providers and a page's local engine fail at random: busy,
//! rate-limited, hanging, stalling, cutting, sending garbage or error events, ending without
//! `[DONE]`. Every request is answered exactly once: a whole stream of the full text (nothing
//! lost, nothing twice, one stream id), a whole answer, a 503 with Retry-After, or a stream cut
//! short whose last event says no route was left.

mod routes;

use std::rc::Rc;

use candlelight::rng::SeededRng;
use candlelight::router::{Local, Mode, RouterConfig, Service};
use routes::{
    ask, provider_config, words, Fault, LocalRoute, MemoryAnswers, Provider, Recorder, Routes, Sim,
    Task,
};
use serde_json::json;

const REQUESTS: usize = 1000;
const AT_ONCE: usize = 50;

fn fault(rng: &mut SeededRng) -> Fault {
    let k = 1 + (rng.next_u64() % 6) as usize;
    match rng.next_u64() % 16 {
        0 => Fault::Busy,
        1 => Fault::RateLimited,
        2 => Fault::Hang,
        3 => Fault::Stall(k),
        4 => Fault::Cut(k),
        5 => Fault::Malformed(k),
        6 => Fault::ErrorEvent(k),
        7 => Fault::NoDone,
        _ => Fault::Fine,
    }
}

#[derive(Debug, Default)]
struct Counts {
    streams: usize,
    wholes: usize,
    unavailable: usize,
    cut_short: usize,
    by_route: std::collections::BTreeMap<String, usize>,
}

#[test]
fn a_thousand_requests_under_random_faults_are_each_answered_once() {
    let (p1, p2, p3) = (
        Provider::new("p1", &["sk-a"]),
        Provider::new("p2", &[]),
        Provider::new("p3", &[]),
    );
    let page = Provider::new("page", &[]);
    let mut rng = SeededRng::new(1000);
    for p in [&p1, &p2, &p3, &page] {
        let faults: Vec<Fault> = (0..4 * REQUESTS).map(|_| fault(&mut rng)).collect();
        p.faults(&faults);
    }
    let mut config = RouterConfig {
        mode: Mode::LocalFirst,
        providers: vec![
            provider_config(&p1, &["sk-bad", "sk-a"], 2),
            provider_config(&p2, &[], 1),
            provider_config(&p3, &[], 0),
        ],
        local_deadlines: routes::FAST,
        cache_bytes: 0,
        ..RouterConfig::default()
    };
    config.retry.base_ms = 50.0;
    config.retry.cap_ms = 400.0;
    config.retry.max_wait_ms = 2000.0;
    let sim = Sim::new();
    let service = Service::new(config, sim.now(), Rc::new(MemoryAnswers::default())).unwrap();
    service.set_local(Local {
        ready: true,
        capable: true,
    });
    let routes = Routes {
        sim: sim.clone(),
        providers: vec![p1.clone(), p2.clone(), p3.clone()],
        local: LocalRoute::Page(page.clone()),
        refused: Vec::new(),
        local_answers: 0.into(),
    };
    let mut counts = Counts::default();
    for batch in 0..REQUESTS / AT_ONCE {
        let bodies: Vec<String> = (0..AT_ONCE)
            .map(|i| {
                let n = batch * AT_ONCE + i;
                ask(json!({"stream": !n.is_multiple_of(3), "temperature": 0.7, "user": format!("u{n}")}))
            })
            .collect();
        let tasks: Vec<Task<Recorder>> = bodies
            .iter()
            .map(|body| {
                let (service, routes) = (&service, &routes);
                Box::pin(async move {
                    let mut r = Recorder::default();
                    service.answer(body, routes, &mut r).await;
                    r
                }) as Task<Recorder>
            })
            .collect();
        for (i, r) in sim.run(tasks).into_iter().enumerate() {
            let n = batch * AT_ONCE + i;
            let streamed = !n.is_multiple_of(3);
            check(n, streamed, &r, &mut counts);
        }
    }
    eprintln!("chaos: {REQUESTS} requests: {counts:?}");
    let answered = counts.streams + counts.wholes;
    assert_eq!(
        answered + counts.unavailable + counts.cut_short,
        REQUESTS,
        "{counts:?}"
    );
    // Half of all tries fail, so some requests find no route left; most must still be answered
    // (the loop fails over rather than gives up), and each of the four outcomes must occur.
    assert!(answered * 5 > REQUESTS * 4, "{counts:?}");
    assert!(counts.unavailable > 0 && counts.cut_short > 0, "{counts:?}");
    assert!(counts.by_route.len() >= 3, "{counts:?}");
}

/// One request's answer is one of the four allowed shapes.
fn check(n: usize, streamed: bool, r: &Recorder, counts: &mut Counts) {
    let status = r
        .status
        .unwrap_or_else(|| panic!("request {n} never answered"));
    assert!(r.closed, "request {n}: the answer was not closed");
    *counts.by_route.entry(r.route().to_string()).or_default() += 1;
    match (status, streamed) {
        (503, _) => {
            assert!(
                r.header("retry-after").is_some(),
                "request {n}: 503 without Retry-After"
            );
            assert_eq!(
                r.json()["error"]["code"],
                "no_route_available",
                "request {n}"
            );
            counts.unavailable += 1;
        }
        (200, true) => {
            let (chunks, done) = r.events();
            let ids: std::collections::BTreeSet<String> = chunks
                .iter()
                .filter(|c| c.get("error").is_none())
                .map(|c| c["id"].to_string())
                .collect();
            assert_eq!(ids.len(), 1, "request {n}: one stream id, got {ids:?}");
            let roles = chunks
                .iter()
                .filter(|c| c["choices"][0]["delta"].get("role").is_some())
                .count();
            assert_eq!(roles, 1, "request {n}: one role chunk");
            if done {
                assert_eq!(
                    r.content(),
                    words(8),
                    "request {n}: nothing lost, nothing twice"
                );
                counts.streams += 1;
            } else {
                let last = chunks.last().expect("an event");
                assert_eq!(
                    last["error"]["code"], "no_route_available",
                    "request {n}: {last}"
                );
                assert!(
                    words(8).starts_with(&r.content()),
                    "request {n}: {:?}",
                    r.content()
                );
                counts.cut_short += 1;
            }
        }
        (200, false) => {
            assert_eq!(
                r.json()["choices"][0]["message"]["content"],
                words(8),
                "request {n}"
            );
            counts.wholes += 1;
        }
        (s, _) => panic!("request {n}: status {s}: {}", r.text),
    }
}
