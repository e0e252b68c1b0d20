//! The real SmolLM2-135M (Q4_1) in a real browser (headless Chromium, in a dedicated worker), on
//! the CPU path as wasm: teacher-forced over llama.cpp's 271-position passage, against the native
//! test's bar (tests/real_model_logits.rs): mean KL from llama.cpp no higher than llama.cpp's own
//! with an f16 KV cache, top-1 misses no more than llama.cpp's one-token steps, each a runner-up.
//! Summation order alone moves this touchy model: the wasm tiles landed at 1.01× that KL when they
//! summed in ggml's SIMD128 lanes, 1.05× with one running sum per row and 0.95× (0.002665 against
//! 0.002814; native x86 0.002786) with eight (tiles::SUMS). The bound here is 1.05× the bar.
//!
//! Needs the model server with the real model linked into fixtures/ (scripts/real_model.sh);
//! scripts/test_web.sh does both.
#![cfg(target_arch = "wasm32")]

mod in_browser;
mod llama_cpp_spread;

use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::Backend;
use candlelight::gguf::GgufFile;
use candlelight::store::MemoryStore;
use in_browser::*;
use llama_cpp_spread::Tally;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn smollm2_in_wasm_diverges_from_llama_cpp_no_more_than_llama_cpp_from_itself() {
    let r = llama_cpp_spread::load();
    let bytes = file_bytes("SmolLM2-135M-Instruct.Q4_1.gguf").await;
    assert_eq!(
        sha256_of(&bytes).await,
        r.sha256,
        "the reference was recorded on this file"
    );
    let store = MemoryStore::from_bytes(&bytes, 4 << 20);
    drop(bytes);
    let file = GgufFile::read(&store).await.unwrap();
    let mut cpu = CpuBackend::load(&file, &store, &mut |_, _| {})
        .await
        .unwrap();
    let mut tally = Tally::default();
    for i in 0..r.positions.len() {
        let logits = cpu.forward(&r.tokens[i..=i]).await.unwrap();
        tally.add(&r, i, &logits);
    }
    console_log!(
        "{}",
        tally.check(
            &r,
            "SmolLM2-135M Q4_1, wasm CPU in Chromium",
            1.05 * r.f16_kv.0,
            r.steps.1
        )
    );
}
