//! Structured output: 200 generated JSON schemas answered by the random-weight fixtures
//! (byte-level BPE and SentencePiece vocabularies) and by the real SmolLM2-135M, on the CPU and on
//! the GPU (Mesa lavapipe here, `WGPU_BACKEND=vulkan`: a constrained step picks on the host; 20
//! for SmolLM2 there unless `CANDLELIGHT_GPU_SCHEMAS` says more), every answer parsed and
//! validated by an independent validator (the `jsonschema` crate); JSON mode; a schema refused
//! with the field named; the grammar's trigger after R1 reasoning.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::Constraint;
use candlelight::gguf::Architecture;
use candlelight::openai::{ApiError, ChatCompletionRequest, LocalModel};
use candlelight::store::FileStore;
use candlelight::structured::{Grammars, OutputRule};
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::{build, schemas, FixtureSpec, Quant};
use serde_json::{json, Value};

const SMOLLM2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
);

fn tiny(spec: FixtureSpec) -> LocalModel {
    let bytes = build(&spec).to_bytes();
    let (store, file) = common::store(&bytes);
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    LocalModel::new("tiny", &file, Box::new(backend)).unwrap()
}

fn smollm2() -> LocalModel {
    let store = FileStore::open(SMOLLM2)
        .unwrap_or_else(|e| panic!("{SMOLLM2}: {e}; run scripts/real_model.sh first"));
    let file = block_on(candlelight::gguf::GgufFile::read(&store)).unwrap();
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    LocalModel::new("smollm2", &file, Box::new(backend)).unwrap()
}

fn answer(m: &mut LocalModel, body: Value) -> Result<Value, ApiError> {
    let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
    block_on(m.start(req, "chatcmpl-s".into(), 1)).map_err(ApiError::from)?;
    let whole = block_on(m.complete()).map_err(ApiError::from)?;
    Ok(serde_json::to_value(whole).unwrap())
}

/// Asks `m` for an answer under each of the first `n` schemas; every one must parse and
/// validate.
fn all_validate(m: &mut LocalModel, prompt: &str) -> usize {
    some_validate(m, prompt, 200)
}

fn some_validate(m: &mut LocalModel, prompt: &str, n: usize) -> usize {
    let mut tokens = 0;
    for (i, schema) in schemas(0x5c4e_3a00, n).into_iter().enumerate() {
        let body = json!({
            "messages": [{"role": "user", "content": prompt}],
            "response_format": {"type": "json_schema",
                "json_schema": {"name": format!("s{i}"), "schema": schema, "strict": true}},
            "temperature": 0.8, "seed": i, "max_tokens": 600,
        });
        let whole = answer(m, body).unwrap();
        let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
        let reason = &whole["choices"][0]["finish_reason"];
        assert_eq!(reason, "stop", "schema {i}: {schema}\nanswer {content:?}");
        let value: Value = serde_json::from_str(content)
            .unwrap_or_else(|e| panic!("schema {i}: {e}: {content:?}"));
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "schema {i}: {schema}\nanswer {content}\n{errors:?}"
        );
        tokens += whole["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    }
    tokens
}

#[test]
fn two_hundred_schemas_validate_on_the_byte_level_fixture() {
    let mut m = tiny(FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0));
    let tokens = all_validate(&mut m, "Describe a thing.");
    eprintln!("qwen3 fixture: 200 answers, {tokens} tokens");
}

#[test]
fn two_hundred_schemas_validate_on_the_sentencepiece_fixture() {
    let mut m = tiny(FixtureSpec::tiny(Architecture::Llama, Quant::Q8_0));
    let tokens = all_validate(&mut m, "Describe a thing.");
    eprintln!("llama fixture: 200 answers, {tokens} tokens");
}

fn on_the_gpu(bytes: &[u8]) -> LocalModel {
    use candlelight::engine::gpu::{GpuBackend, GpuOptions};
    let (store, file) = common::store(bytes);
    let gpu = block_on(GpuBackend::load(
        &file,
        &store,
        GpuOptions::default(),
        &mut |_, _, _| {},
    ))
    .expect("a GPU (natively: WGPU_BACKEND=vulkan on lavapipe)");
    LocalModel::new("tiny-gpu", &file, Box::new(gpu)).unwrap()
}

#[test]
fn two_hundred_schemas_validate_on_the_gpu() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0)).to_bytes();
    let mut m = on_the_gpu(&bytes);
    let tokens = all_validate(&mut m, "Describe a thing.");
    eprintln!("qwen3 fixture on the GPU: 200 answers, {tokens} tokens");
}

/// The first 20 (`CANDLELIGHT_GPU_SCHEMAS=200` for all): lavapipe runs SmolLM2 on this
/// machine's two cores, a few tokens a second.
#[test]
fn schemas_validate_on_smollm2_on_the_gpu() {
    let n = std::env::var("CANDLELIGHT_GPU_SCHEMAS").map_or(20, |v| v.parse().unwrap_or(20));
    let bytes = std::fs::read(SMOLLM2).expect("scripts/real_model.sh fetches it");
    let mut m = on_the_gpu(&bytes);
    let t = std::time::Instant::now();
    let tokens = some_validate(&mut m, "Give me an example record as JSON.", n);
    eprintln!(
        "SmolLM2 on the GPU: {n} answers, {tokens} tokens, {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn two_hundred_schemas_validate_on_smollm2() {
    let mut m = smollm2();
    let tokens = all_validate(&mut m, "Give me an example record as JSON.");
    eprintln!("SmolLM2: 200 answers, {tokens} tokens");
}

#[test]
fn json_mode_answers_an_object_on_smollm2() {
    let mut m = smollm2();
    for seed in 0..5 {
        let whole = answer(
            &mut m,
            json!({"messages": [{"role": "user", "content": "List three fruits and their colors as JSON."}],
                "response_format": {"type": "json_object"}, "temperature": 0.7, "seed": seed,
                "max_tokens": 300}),
        )
        .unwrap();
        let content = whole["choices"][0]["message"]["content"].as_str().unwrap();
        let value: Value = serde_json::from_str(content)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}: {content:?}"));
        assert!(value.is_object(), "{content}");
    }
}

#[test]
fn a_bad_schema_or_format_is_refused_naming_response_format() {
    let mut m = tiny(FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0));
    let user = json!([{"role": "user", "content": "x"}]);
    for format in [
        json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "wat"}}}),
        json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object",
            "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}}, "required": ["n"]}}}),
        json!({"type": "json_schema", "json_schema": {"name": "a", "schema": [1, 2]}}),
        json!({"type": "json_schema"}),
        json!({"type": "yaml"}),
    ] {
        let err = answer(&mut m, json!({"messages": user, "response_format": format})).unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_request", "{format}: {err}");
        assert_eq!(err.param(), Some("response_format"), "{format}: {err}");
    }
    let err = answer(&mut m, json!({"messages": user, "n": 3})).unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.param()),
        ("unsupported_feature", Some("n"))
    );
}

/// An R1 model's JSON comes after its reasoning: the grammar waits for `</think>` (here in the
/// middle of a token) and then holds the rest to the schema.
#[test]
fn the_grammar_waits_for_the_end_of_reasoning() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q8_0)).to_bytes();
    let (_store, file) = common::store(&bytes);
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let grammars = Grammars::new(&tok).unwrap();
    let schema = json!({"type": "object", "properties": {"a": {"type": "boolean"}},
        "required": ["a"], "additionalProperties": false});
    let rule = OutputRule::json(Some(&schema), true, true).unwrap();
    let mut c = grammars.constraint(&rule).unwrap();
    let mut logits = vec![0.0; tok.vocab_size()];
    for t in tok
        .encode("Let me think. Done</think>\n\n{\"a\": ", false)
        .unwrap()
    {
        if c.is_active() {
            logits.fill(0.0);
            assert!(c.mask(&mut logits, tok.stop_tokens()).unwrap());
            assert!(logits[t as usize].is_finite(), "token {t} refused");
        }
        c.accept(t).unwrap();
    }
    assert!(c.is_active());
    logits.fill(0.0);
    c.mask(&mut logits, tok.stop_tokens()).unwrap();
    let allowed: Vec<String> = (0..logits.len())
        .filter(|&i| logits[i].is_finite())
        .map(|i| tok.decode(&[i as u32], false).unwrap())
        .collect();
    assert!(!allowed.is_empty());
    for text in &allowed {
        assert!(
            "true".starts_with(text.as_str()) || "false".starts_with(text.as_str()),
            "{text:?}"
        );
    }
}
