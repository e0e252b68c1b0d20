//! The chat-completions surface over a local model: streamed and whole answers agree, chunks are
//! shaped as OpenAI and DeepSeek send them, R1 reasoning is split out, bad requests are refused.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::Architecture;
use candlelight::openai::{
    AnswerError, ChatCompletionChunk, ChatCompletionRequest, LocalModel, RequestError,
};
use candlelight_fixtures::{build, FixtureSpec, Quant};
use serde_json::json;

fn model(arch: Architecture) -> LocalModel {
    let bytes = build(&FixtureSpec::tiny(arch, Quant::Q8_0)).to_bytes();
    let (store, file) = common::store(&bytes);
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    LocalModel::new("tiny", &file, Box::new(backend)).unwrap()
}

fn request(body: serde_json::Value) -> ChatCompletionRequest {
    serde_json::from_value(body).expect("request parses")
}

fn stream(m: &mut LocalModel, body: serde_json::Value) -> Vec<ChatCompletionChunk> {
    block_on(m.start(request(body), "chatcmpl-1".into(), 7)).unwrap();
    let mut chunks = Vec::new();
    while let Some(step) = block_on(m.step()).unwrap() {
        chunks.extend(step);
    }
    chunks
}

fn text_of(chunks: &[ChatCompletionChunk]) -> (String, String) {
    let mut content = String::new();
    let mut reasoning = String::new();
    for ch in chunks {
        for choice in &ch.choices {
            content.push_str(choice.delta.content.as_deref().unwrap_or(""));
            reasoning.push_str(choice.delta.reasoning_content.as_deref().unwrap_or(""));
        }
    }
    (content, reasoning)
}

#[test]
fn streamed_and_whole_answers_agree_and_are_shaped_like_openai() {
    let mut m = model(Architecture::Qwen3);
    let body = json!({"model": "x", "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 24, "temperature": 0.8, "seed": 11, "stream": true,
        "stream_options": {"include_usage": true}});
    let chunks = stream(&mut m, body.clone());

    let first = &chunks[0];
    assert_eq!(first.object, "chat.completion.chunk");
    assert_eq!(first.choices[0].delta.role.as_deref(), Some("assistant"));
    let usage_chunk = chunks.last().unwrap();
    assert!(
        usage_chunk.choices.is_empty(),
        "the usage chunk has no choices"
    );
    let usage = usage_chunk
        .usage
        .clone()
        .expect("include_usage sends usage");
    let finish = &chunks[chunks.len() - 2];
    assert!(matches!(
        finish.choices[0].finish_reason.as_deref(),
        Some("stop" | "length")
    ));
    assert!(
        finish.timings.is_some(),
        "the last choice chunk carries timings"
    );
    assert!(chunks[..chunks.len() - 2]
        .iter()
        .all(|c| c.choices[0].finish_reason.is_none() && c.usage.is_none()));
    assert!(chunks
        .iter()
        .all(|c| c.id == "chatcmpl-1" && c.created == 7 && c.model == "tiny"));
    assert!(usage.completion_tokens >= 1 && usage.completion_tokens <= 24);
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    let (content, reasoning) = text_of(&chunks);
    assert!(reasoning.is_empty(), "a ChatML model has no reasoning");
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    block_on(m.start(request(whole), "chatcmpl-2".into(), 8)).unwrap();
    let answer = block_on(m.complete()).unwrap();
    assert_eq!(answer.object, "chat.completion");
    assert_eq!(
        answer.choices[0].message.content.as_deref(),
        Some(content.as_str()),
        "same seed, same text, streamed or not"
    );
    assert_eq!(answer.choices[0].message.reasoning_content, None);
    assert_eq!(answer.usage.completion_tokens, usage.completion_tokens);
    assert_eq!(
        answer.usage.prompt_cache_hit_tokens + answer.usage.prompt_cache_miss_tokens,
        answer.usage.prompt_tokens
    );
    assert!(
        answer.usage.prompt_cache_hit_tokens > 0,
        "the second request reuses the first one's prompt"
    );
    let v = serde_json::to_value(&answer).unwrap();
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["timings"]["decode_tokens_per_s"].is_number());
}

#[test]
fn r1_style_models_stream_reasoning_content() {
    // The tiny Qwen2 fixture carries DeepSeek-R1's template, whose prompt opens <think>.
    let mut m = model(Architecture::Qwen2);
    let body = json!({"messages": [{"role": "user", "content": "why?"}], "max_tokens": 16, "seed": 3, "stream": true});
    let chunks = stream(&mut m, body.clone());
    let (content, reasoning) = text_of(&chunks);
    assert!(
        !reasoning.is_empty(),
        "text inside <think> arrives as reasoning_content"
    );
    let mut whole = body;
    whole["stream"] = json!(false);
    block_on(m.start(request(whole), "b".into(), 0)).unwrap();
    let answer = block_on(m.complete()).unwrap();
    assert_eq!(
        answer.choices[0].message.reasoning_content.as_deref(),
        Some(reasoning.as_str())
    );
    assert_eq!(
        answer.choices[0].message.content.as_deref(),
        Some(content.as_str())
    );
    let details = answer.usage.completion_tokens_details.reasoning_tokens;
    assert!(details >= 1 && details <= answer.usage.completion_tokens);
}

#[test]
fn stop_strings_and_abort() {
    let mut m = model(Architecture::Llama);
    let base = json!({"messages": [{"role": "user", "content": "count"}], "max_tokens": 30, "temperature": 0});
    block_on(m.start(request(base.clone()), "a".into(), 0)).unwrap();
    let full = block_on(m.complete()).unwrap().choices[0]
        .message
        .content
        .clone()
        .unwrap();
    assert!(
        full.chars().count() > 6,
        "the greedy text is long enough to cut: {full:?}"
    );
    let cut: String = full.chars().skip(3).take(3).collect();
    let mut with_stop = base.clone();
    with_stop["stop"] = json!(cut);
    block_on(m.start(request(with_stop), "b".into(), 0)).unwrap();
    let stopped = block_on(m.complete()).unwrap();
    assert_eq!(stopped.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(
        stopped.choices[0].message.content.as_deref(),
        Some(&full[..full.find(&cut).unwrap()])
    );

    block_on(m.start(request(base), "c".into(), 0)).unwrap();
    block_on(m.step()).unwrap();
    block_on(m.step()).unwrap();
    m.abort();
    let mut after = Vec::new();
    while let Some(step) = block_on(m.step()).unwrap() {
        after.extend(step);
    }
    assert_eq!(
        after.last().unwrap().choices[0].finish_reason.as_deref(),
        Some("abort")
    );
    assert!(m.tokens().len() <= 2);
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let mut m = model(Architecture::Qwen3);
    let cases = [
        (json!({"messages": []}), Some("messages")),
        (
            json!({"messages": [{"role": "robot", "content": "x"}]}),
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
            Some("temperature"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "top_p": 0}),
            Some("top_p"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "frequency_penalty": -2.5}),
            Some("frequency_penalty"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 9}),
            Some("presence_penalty"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            Some("max_tokens"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
            Some("n"),
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            Some("messages"),
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stop": vec!["a"; 17]}),
            Some("stop"),
        ),
    ];
    for (body, param) in cases {
        match block_on(m.start(request(body.clone()), "x".into(), 0)) {
            Err(AnswerError::Request(e)) => assert_eq!(e.param(), param, "{body}: {e}"),
            Err(e) => panic!("{body}: wrong error {e}"),
            Ok(_) => panic!("{body}: accepted"),
        }
    }
    assert!(serde_json::from_value::<ChatCompletionRequest>(json!({"messages": "hi"})).is_err());
    assert!(matches!(RequestError::NoMessages.param(), Some("messages")));

    let long = "word ".repeat(2000);
    let body = json!({"messages": [{"role": "user", "content": long}]});
    assert!(matches!(
        block_on(m.start(request(body), "x".into(), 0)),
        Err(AnswerError::Engine(
            candlelight::engine::EngineError::ContextFull { .. }
        ))
    ));
}

#[test]
fn text_parts_and_developer_messages_are_accepted() {
    let mut m = model(Architecture::Qwen3);
    let body = json!({"messages": [
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]}],
        "max_tokens": 4, "temperature": 0});
    let req = m.prompt(&request(body)).unwrap().generate;
    let prompt = m.tokenizer().decode(&req.prompt, false).unwrap();
    assert!(prompt.contains("<|im_start|>system\nbe brief"), "{prompt}");
    assert!(prompt.contains("hi there"), "{prompt}");
    block_on(m.start(
        request(json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 4})),
        "a".into(),
        0,
    ))
    .unwrap();
    assert!(block_on(m.complete()).unwrap().usage.completion_tokens <= 4);
}

/// A last assistant message marked `prefix` (how the router resumes a broken stream) ends the
/// prompt with its text: the prompt is the plain request's, then the partial answer.
#[test]
fn an_assistant_prefix_is_continued() {
    let m = model(Architecture::Qwen2);
    let user = json!({"role": "user", "content": "Count to ten"});
    let plain = m
        .prompt(&request(json!({"messages": [user.clone()]})))
        .unwrap()
        .generate;
    let cont = m.prompt(&request(json!({"messages": [user.clone(), {"role": "assistant", "content": "one two", "prefix": true}]}))).unwrap().generate;
    let tok = m.tokenizer();
    let (a, b) = (
        tok.decode(&plain.prompt, false).unwrap(),
        tok.decode(&cont.prompt, false).unwrap(),
    );
    assert_eq!(
        b,
        format!("{a}one two"),
        "the partial answer follows the generation prompt"
    );
    // Without `prefix` the assistant turn is a finished one.
    let done = m
        .prompt(&request(
            json!({"messages": [user, {"role": "assistant", "content": "one two"}]}),
        ))
        .unwrap()
        .generate;
    assert!(tok.decode(&done.prompt, false).unwrap().len() > b.len());
}

/// A conversation an app saves: id, title and times filled in, strange roles and huge ones
/// refused before anything is stored.
#[test]
fn a_saved_conversation_gets_an_id_a_title_and_times() {
    use candlelight::openai::conversation::{Conversation, ConversationError, MAX_BYTES};
    let parse = |v: serde_json::Value| serde_json::from_value::<Conversation>(v).unwrap();
    let mut c = parse(json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  What is\nthe   tallest mountain on Earth, and how was its height measured over the years?"},
        {"role": "assistant", "content": "Everest.", "reasoning_content": "easy"}
    ]}));
    c.prepare(|| "id-1".into()).unwrap();
    c.revise(None, 1000.0).unwrap();
    assert_eq!(c.id, "id-1");
    assert_eq!(
        c.title,
        "What is the tallest mountain on Earth, and how was its…"
    );
    assert_eq!((c.created, c.updated, c.revision), (1000.0, 1000.0, 1));
    assert_eq!(c.summary().messages, 3);
    let saved = serde_json::to_value(&c).unwrap();
    assert_eq!(
        saved["messages"][2]["reasoning_content"], "easy",
        "reasoning is kept"
    );

    // Saved again later: the same id and title, a new update time, the next revision.
    let mut again = parse(saved);
    again.prepare(|| unreachable!("it has an id")).unwrap();
    again.revise(Some(&c), 2000.0).unwrap();
    assert_eq!(
        (
            again.id.as_str(),
            again.created,
            again.updated,
            again.revision
        ),
        ("id-1", 1000.0, 2000.0, 2)
    );

    let mut empty = Conversation::default();
    empty.prepare(|| "e".into()).unwrap();
    assert_eq!(empty.title, "New chat");
    let mut odd = parse(json!({"messages": [{"role": "robot", "content": "beep"}]}));
    assert_eq!(
        odd.prepare(|| "x".into()),
        Err(ConversationError::Role("robot".into()))
    );
    let mut huge = parse(json!({"messages": [{"role": "user", "content": "x".repeat(MAX_BYTES)}]}));
    assert!(matches!(
        huge.prepare(|| "x".into()),
        Err(ConversationError::TooLarge(_))
    ));
}

/// A save names the revision it was made from. One made from a copy the store no longer holds
/// (another tab saved, or deleted, since) is refused with the revision the store holds, and a
/// record from before revisions counts as revision 0.
#[test]
fn a_save_from_a_stale_revision_is_a_conflict() {
    use candlelight::openai::conversation::{check_revision, Conversation, ConversationError};
    let parse = |v: serde_json::Value| serde_json::from_value::<Conversation>(v).unwrap();
    let mut first = parse(json!({"id": "c", "messages": [{"role": "user", "content": "hi"}]}));
    first.revise(None, 10.0).unwrap();
    assert_eq!(first.revision, 1);

    // Two tabs load revision 1; the first to save makes revision 2.
    let mut tab_a = first.clone();
    let mut tab_b = first.clone();
    tab_a.revise(Some(&first), 20.0).unwrap();
    assert_eq!((tab_a.revision, tab_a.created), (2, 10.0));
    let err = tab_b.revise(Some(&tab_a), 30.0).unwrap_err();
    assert_eq!(
        err,
        ConversationError::Conflict {
            id: "c".into(),
            read: 1,
            stored: Some(2)
        }
    );
    assert_eq!(err.stored_revision(), Some(2));
    assert!(err.to_string().contains("revision 2"), "{err}");
    assert_eq!(tab_b.revision, 1, "a refused save is left as it was");

    // Saving without a revision over a stored conversation is refused too.
    let mut blind = parse(json!({"id": "c", "messages": []}));
    assert!(blind.revise(Some(&tab_a), 40.0).is_err());
    // So is saving from a revision of one deleted since; with none named, it starts over.
    let mut after_delete = tab_a.clone();
    assert_eq!(
        after_delete
            .revise(None, 50.0)
            .unwrap_err()
            .stored_revision(),
        Some(0)
    );
    let mut anew = parse(json!({"id": "c", "messages": []}));
    anew.revise(None, 50.0).unwrap();
    assert_eq!(anew.revision, 1);

    // A record from before revisions (none in its JSON) is revision 0.
    let old = parse(json!({"id": "c", "messages": [], "created": 5.0, "updated": 5.0}));
    let mut resaved = old.clone();
    resaved.revise(Some(&old), 60.0).unwrap();
    assert_eq!((resaved.revision, resaved.created), (1, 5.0));

    assert!(check_revision("c", 2, Some(&tab_a)).is_ok());
    assert!(check_revision("c", 0, None).is_ok());
    assert!(check_revision("c", 1, Some(&tab_a)).is_err());
}
