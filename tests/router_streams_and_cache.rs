//! What the router does with answers, piece by piece: the key identical deterministic requests
//! share and their followers waiting on the first, the continuation of a broken stream and its
//! stitching into one stream, a cached answer replayed as a stream or whole, and the answer
//! cache's least-recently-used order under its byte cap.

use candlelight::router::*;
use serde_json::json;

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
    assert!(matches!(c.join(&k), Role::Leader));
    let followers: Vec<Follow> = (0..2)
        .map(|_| match c.join(&k) {
            Role::Follower(f) => f,
            Role::Leader => panic!("a second leader for one key"),
        })
        .collect();
    assert_eq!(c.in_flight(), 1);
    let answer = json!({"object": "chat.completion"});
    assert_eq!(c.finish(&k, Some(("p1".into(), answer.clone()))), 2);
    for f in followers {
        assert_eq!(
            candlelight::block_on(f),
            Some(("p1".to_string(), answer.clone())),
            "each follower gets the leader's answer"
        );
    }
    assert!(
        matches!(c.join(&k), Role::Leader),
        "a later request goes out again"
    );
    let Role::Follower(f) = c.join(&k) else {
        panic!("the second joins the new leader")
    };
    c.finish(&k, None);
    assert_eq!(
        candlelight::block_on(f),
        None,
        "no whole answer: it goes out itself"
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
fn a_cached_answer_replays_as_the_stream_or_the_whole_answer_it_was() {
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
