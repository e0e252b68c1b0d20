//! A model file's chat template and special tokens are code and data from a stranger: templates
//! that loop without end, build text without bound, or are megabytes long, and special tokens of
//! thousands of bytes, are refused with `invalid_model` and a reason, quickly and without large
//! allocations.

mod common;

use candlelight::block_on;
use candlelight::chat::{ChatError, ChatTemplate, Message, MAX_TEMPLATE_BYTES};
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::EngineError;
use candlelight::gguf::{Architecture, Value};
use candlelight::openai::{ApiError, ChatCompletionRequest, LocalModel, ModelText};
use candlelight::tokenizer::{Tokenizer, TokenizerError, MAX_SPECIAL_TOKEN_BYTES};
use candlelight_fixtures::{build, FixtureSpec, Quant, Template};
use common::alloc_watch::{watched, Watch};

#[global_allocator]
static ALLOC: Watch = Watch;

fn hi() -> Vec<Message> {
    vec![Message::new("user", "Hi")]
}

/// Renders `source` and returns the error with the largest allocation made meanwhile.
fn render_watched(source: &str) -> (ChatError, usize) {
    let t = ChatTemplate::new(source, "", "").expect("template parses");
    let (r, largest, _) = watched(|| t.render(&hi(), true));
    (r.expect_err("the template is stopped"), largest)
}

#[test]
fn nested_loops_run_out_of_fuel() {
    let (e, _) = render_watched(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    );
    assert!(e.is_limit(), "{e}");
    assert!(e.to_string().contains("fuel"), "{e}");
}

#[test]
fn text_doubled_through_a_namespace_stops_before_it_grows() {
    let (e, largest) = render_watched(
        "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}\
         {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    );
    assert!(e.is_limit(), "{e}");
    // Fuel pays for 64 bytes each; the whole budget is 32 MiB of text.
    assert!(largest < 40 << 20, "largest allocation {largest} bytes");
    // The same through a macro calling itself.
    let (e, largest) = render_watched(
        "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s | length }}{% endif %}\
         {% endmacro %}{{ d('xxxxxxxx', 40) }}",
    );
    assert!(e.is_limit(), "{e}");
    assert!(largest < 40 << 20, "largest allocation {largest} bytes");
}

#[test]
fn a_prompt_past_the_output_cap_is_refused_as_it_is_written() {
    let (e, largest) = render_watched("{% for i in range(64) %}{{ 'x' * 1000000 }}{% endfor %}");
    assert!(e.is_limit(), "{e}");
    assert!(e.to_string().contains("bytes of prompt"), "{e}");
    assert!(largest < 16 << 20, "largest allocation {largest} bytes");
}

#[test]
fn a_template_of_megabytes_is_refused_before_it_is_parsed() {
    let huge = format!("{{# {} #}}", "x".repeat(MAX_TEMPLATE_BYTES));
    let e = ChatTemplate::new(&huge, "", "").err().expect("refused");
    assert!(e.is_limit(), "{e}");
    let just = "x".repeat(MAX_TEMPLATE_BYTES);
    assert!(ChatTemplate::new(&just, "", "").is_ok());
}

#[test]
fn a_long_conversation_with_tools_still_renders() {
    // 200 turns of 2 KB each with tools, through Qwen2.5's tool block: far more than a context
    // holds, and well inside the fuel.
    let t = ChatTemplate::new(Template::HermesTools.source().unwrap(), "", "").unwrap();
    let turn = "word ".repeat(400);
    let messages: Vec<Message> = (0..200)
        .map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, &turn))
        .collect();
    let tools = serde_json::json!([{"type": "function", "function": {"name": "f",
        "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]);
    let text = t
        .render_with_tools(&messages, Some(&tools), true)
        .expect("renders");
    assert!(text.len() > 200 * turn.len(), "{} bytes", text.len());
}

fn file_with(edit: impl FnOnce(&mut FixtureSpec) -> Option<String>) -> Vec<u8> {
    let mut spec = FixtureSpec::tiny(Architecture::Qwen2, Quant::Q8_0);
    let template = edit(&mut spec);
    let mut w = build(&spec);
    if let Some(t) = template {
        w.meta("tokenizer.chat_template", Value::String(t));
    }
    w.to_bytes()
}

fn code(e: impl Into<ApiError>) -> &'static str {
    e.into().code.as_str()
}

#[test]
fn a_file_whose_template_never_ends_gives_invalid_model_per_request() {
    let bytes = file_with(|s| {
        s.template = Template::None;
        Some(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                .into(),
        )
    });
    let (store, file) = common::store(&bytes);
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let m = LocalModel::new("hostile", &file, Box::new(backend)).unwrap();
    let req: ChatCompletionRequest = serde_json::from_value(
        serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]}),
    )
    .unwrap();
    let e = m.prompt(&req).err().expect("refused");
    assert_eq!(code(e), "invalid_model");
}

#[test]
fn a_file_whose_template_is_megabytes_gives_invalid_model_at_load() {
    let bytes = file_with(|s| {
        s.template = Template::None;
        Some(format!("{{# {} #}}", "x".repeat(MAX_TEMPLATE_BYTES)))
    });
    let (_, file) = common::store(&bytes);
    let e = ModelText::from_gguf(&file).err().expect("refused");
    assert!(matches!(e, EngineError::ModelLimit(_)), "{e}");
    assert_eq!(code(e), "invalid_model");
}

#[test]
fn a_special_token_of_thousands_of_bytes_is_refused_before_the_tokenizer_is_built() {
    let bytes = file_with(|s| {
        let i = s.vocab.tokens.len() - 1;
        s.vocab.tokens[i] = "<".repeat(30_000);
        s.vocab.types[i] = 3; // control
        None
    });
    let (_, file) = common::store(&bytes);
    let e = Tokenizer::from_gguf(&file).expect_err("refused");
    assert!(matches!(e, TokenizerError::Limit(_)), "{e}");
    assert!(e.to_string().contains("30000 bytes"), "{e}");
    let e = ModelText::from_gguf(&file).err().expect("refused");
    assert_eq!(code(e), "invalid_model");
    // A long ordinary token is no special token: it is kept.
    let bytes = file_with(|s| {
        let i = s.vocab.tokens.len() - 1;
        s.vocab.tokens[i] = "x".repeat(MAX_SPECIAL_TOKEN_BYTES + 1);
        s.vocab.types[i] = 1;
        None
    });
    let (_, file) = common::store(&bytes);
    assert!(Tokenizer::from_gguf(&file).is_ok());
}
