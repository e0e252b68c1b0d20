//! The request the browser test (tests/web_engine.rs) replays on the wasm engine, and the tokens
//! the native engine generates for it: the two must be equal. Run with UPDATE_REFERENCE=1 to
//! rewrite tests/data/web_generation.json after a deliberate change.

mod common;

use candlelight::engine::cpu::CpuBackend;
use candlelight::fixture::{build, FixtureSpec, Quant};
use candlelight::gguf::Architecture;
use candlelight::openai::{ChatCompletionRequest, LocalModel};

#[test]
fn native_tokens_for_the_browser_generation_test() {
    let mut reference = common::read_json("web_generation.json");
    let spec = FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0);
    assert_eq!(reference["fixture"], spec.name.as_str());
    let bytes = build(&spec).to_bytes();
    let (store, file) = common::store(&bytes);
    let mut model = LocalModel::new("tiny", &file, Box::new(CpuBackend::load(&file, &store).unwrap())).unwrap();
    let req: ChatCompletionRequest = serde_json::from_value(reference["request"].clone()).unwrap();
    let mut c = model.start(req, "x".into(), 0).unwrap();
    model.complete(&mut c).unwrap();
    let tokens = serde_json::to_value(c.tokens()).unwrap();
    let sha = common::sha256_hex(&bytes);
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        reference["tokens"] = tokens;
        reference["fixture_sha256"] = sha.into();
        std::fs::write(common::data("web_generation.json"), serde_json::to_string_pretty(&reference).unwrap() + "\n").unwrap();
        return;
    }
    assert_eq!(reference["fixture_sha256"], sha.as_str(), "the fixture changed: rerun with UPDATE_REFERENCE=1");
    assert!(c.tokens().len() >= 8, "the reference run is long enough to compare");
    assert_eq!(reference["tokens"], tokens);
}
