//! In a real browser (headless Chromium, WebGPU on SwiftShader, inside a dedicated worker): the
//! GPU backend's tokens equal the native GPU backend's, and a device lost mid-answer under
//! `auto` finishes the answer on the CPU (under `gpu`, it is a `device_lost` error).
//!
//! Needs the model server: `node scripts/serve.mjs --port 8787` with fixtures/ generated
//! (`cargo run --release --example make_fixtures -- fixtures tiny`); scripts/test_web.sh does both.
#![cfg(target_arch = "wasm32")]

mod in_browser;

use candlelight::web::EngineCore;
use in_browser::*;
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The GPU backend in Chromium (WebGPU on SwiftShader): weights streamed from IndexedDB into GPU
/// buffers, greedy tokens picked on the GPU, equal to the native GPU backend's on lavapipe.
#[wasm_bindgen_test]
async fn gpu_generation_in_the_browser_matches_the_native_gpu_backend() {
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    let url = format!("{SERVER}/models/{MODEL}?t=gpu&run={}", run_id());
    let phases = js_sys::Array::new();
    let record = phases.clone();
    let on_progress = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| {
        record.push(&Reflect::get(&ev, &"phase".into()).unwrap());
    });
    let options = js_options(&[
        ("backend", "gpu".into()),
        ("onProgress", on_progress.as_ref().clone()),
    ]);
    let engine = EngineCore::load(url.into(), options)
        .await
        .expect("WebGPU is on in these tests (webdriver.json)");
    let phases: Vec<String> = phases.iter().filter_map(|p| p.as_string()).collect();
    assert!(
        phases.iter().any(|p| p == "load") && phases.last().map(String::as_str) == Some("compile"),
        "{phases:?}"
    );
    assert_eq!(info(&engine, "backend").as_string().as_deref(), Some("gpu"));
    assert!(info(&engine, "adapter").as_string().is_some());
    let body = js_sys::JSON::parse(&reference["gpu_request"].to_string()).unwrap();
    let c = answer(&engine, body).await.unwrap();
    while !step(&c).await.unwrap().is_null() {}
    let expected: Vec<u32> = serde_json::from_value(reference["gpu_tokens"].clone()).unwrap();
    assert_eq!(
        c.tokens(),
        expected,
        "WebGPU in the browser, same tokens as the native GPU backend"
    );
}

/// Under `auto`, a device lost mid-answer moves the engine to the CPU and the answer finishes
/// there: no error reaches the caller, every requested token arrives, and `info` says why.
/// Under `gpu`, the same loss is a `device_lost` error.
#[wasm_bindgen_test]
async fn a_lost_device_under_auto_finishes_the_answer_on_the_cpu() {
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    let url = format!("{SERVER}/models/{MODEL}?t=lost&run={}", run_id());
    let expected: Vec<u32> = serde_json::from_value(reference["gpu_tokens"].clone()).unwrap();
    let engine = EngineCore::load(url.clone().into(), JsValue::UNDEFINED)
        .await
        .unwrap();
    assert_eq!(
        info(&engine, "backend").as_string().as_deref(),
        Some("gpu"),
        "auto takes WebGPU when it is there"
    );
    let body = js_sys::JSON::parse(&reference["gpu_request"].to_string()).unwrap();
    let c = answer(&engine, body.clone()).await.unwrap();
    for _ in 0..6 {
        step(&c).await.unwrap();
    }
    assert!(engine.lose_device());
    while !step(&c)
        .await
        .expect("the answer carries on on the CPU")
        .is_null()
    {}
    let tokens = c.tokens();
    assert_eq!(
        tokens.len(),
        expected.len(),
        "every requested token arrived"
    );
    assert_eq!(
        tokens[..5],
        expected[..5],
        "the tokens before the loss came from the GPU"
    );
    assert_eq!(info(&engine, "backend").as_string().as_deref(), Some("cpu"));
    assert!(info(&engine, "fallbackReason")
        .as_string()
        .unwrap()
        .contains("lost"));

    let strict = EngineCore::load(url.into(), js_options(&[("backend", "gpu".into())]))
        .await
        .unwrap();
    let c = answer(&strict, body).await.unwrap();
    step(&c).await.unwrap();
    assert!(strict.lose_device());
    let mut err = None;
    for _ in 0..3 {
        if let Err(e) = step(&c).await {
            err = Some(e);
            break;
        }
    }
    assert_eq!(
        code_of(&err.expect("backend 'gpu' reports the loss")),
        "device_lost"
    );
}
