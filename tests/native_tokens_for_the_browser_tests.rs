//! The requests the browser tests (tests/web_engine.rs) replay on the wasm engine, and the tokens
//! the native engine generates for them: the two must be equal. `request` runs on the CPU
//! backend (wasm SIMD128 in the browser); `gpu_request` on the GPU backend without f16 (as on
//! SwiftShader), natively on lavapipe. Run with UPDATE_REFERENCE=1 to rewrite
//! tests/data/web_generation.json after a deliberate change.
//!
//! Both requests are greedy. The two CPU engines add the same products in different orders (x86:
//! ggml's AVX2 lanes with fused multiply-adds; wasm: the scalar definition's order, and attention
//! through each target's gemm), so their logits agree to float rounding, not bit for bit. Sampled
//! at temperature 1 over the random model's near-uniform 620-way distribution, one draw in 40
//! landed on the other side of a boundary when the wasm tiles' order changed; a greedy pick
//! differs only where the top two logits tie to rounding.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::{GpuBackend, GpuOptions, Wanted};
use candlelight::gguf::Architecture;
use candlelight::openai::{ChatCompletionRequest, LocalModel};
use candlelight_fixtures::{build, FixtureSpec, Quant};

#[test]
fn native_tokens_for_the_browser_generation_test() {
    let mut reference = common::read_json("web_generation.json");
    let spec = FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0);
    assert_eq!(reference["fixture"], spec.name.as_str());
    let bytes = build(&spec).to_bytes();
    let (store, file) = common::store(&bytes);
    let mut model = LocalModel::new(
        "tiny",
        &file,
        Box::new(block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap()),
    )
    .unwrap();
    let req: ChatCompletionRequest = serde_json::from_value(reference["request"].clone()).unwrap();
    block_on(model.start(req, "x".into(), 0)).unwrap();
    block_on(model.complete()).unwrap();
    let tokens = serde_json::to_value(model.tokens()).unwrap();
    let options = GpuOptions {
        wanted: Wanted {
            f16: false,
            ..Wanted::default()
        },
        ..GpuOptions::default()
    };
    let gpu = block_on(GpuBackend::load(&file, &store, options, &mut |_, _, _| {})).unwrap();
    let mut on_gpu = LocalModel::new("tiny", &file, Box::new(gpu)).unwrap();
    let req: ChatCompletionRequest =
        serde_json::from_value(reference["gpu_request"].clone()).unwrap();
    block_on(on_gpu.start(req, "x".into(), 0)).unwrap();
    block_on(on_gpu.complete()).unwrap();
    let gpu_tokens = serde_json::to_value(on_gpu.tokens()).unwrap();
    let sha = common::sha256_hex(&bytes);
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        reference["tokens"] = tokens;
        reference["gpu_tokens"] = gpu_tokens;
        reference["fixture_sha256"] = sha.into();
        std::fs::write(
            common::data("web_generation.json"),
            serde_json::to_string_pretty(&reference).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    assert_eq!(
        reference["fixture_sha256"],
        sha.as_str(),
        "the fixture changed: rerun with UPDATE_REFERENCE=1"
    );
    assert!(
        model.tokens().len() >= 8,
        "the reference run is long enough to compare"
    );
    assert_eq!(reference["tokens"], tokens);
    assert!(
        on_gpu.tokens().len() >= 16,
        "the GPU reference run is long enough to compare"
    );
    assert_eq!(reference["gpu_tokens"], gpu_tokens);
}
