//! In a real browser (headless Chromium, `wasm-pack test --headless --chrome`, inside a dedicated
//! worker as the engine runs): the IndexedDB chunk store, downloads that resume after a cut, a
//! damaged chunk found and fetched again, the quota check, a server that ignores Range, and a
//! whole generation whose tokens equal the native engine's.
//!
//! Needs the model server: `node scripts/serve.mjs --port 8787` with fixtures/ generated
//! (`cargo run --release --example make_fixtures -- fixtures tiny`); scripts/test_web.sh does both.
#![cfg(target_arch = "wasm32")]

use candlelight::download::{chunk_count, fetch};
use candlelight::store::indexed_db::{sha256_hex, Db, IdbChunks};
use candlelight::store::AsyncChunkStore;
use candlelight::web::EngineCore;
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const SERVER: &str = match option_env!("CANDLELIGHT_MODEL_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:8787",
};
const MODEL: &str = "tiny-qwen3-q8_0.gguf";
const CHUNK: u64 = 64 << 10;
const REFERENCE: &str = include_str!("data/web_generation.json");

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    fn fetch_str(url: &str) -> js_sys::Promise;
}

async fn get_json(path: &str) -> serde_json::Value {
    let resp: web_sys::Response = JsFuture::from(fetch_str(&format!("{SERVER}{path}")))
        .await
        .unwrap()
        .unchecked_into();
    let text = JsFuture::from(resp.text().unwrap())
        .await
        .unwrap()
        .as_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The server's log of requests for `url` (path and query: each test uses its own query, and
/// sets its faults there, because the harness runs async tests concurrently).
async fn model_requests(url: &str) -> Vec<serde_json::Value> {
    let log = get_json("/__log").await;
    let url = url.strip_prefix(SERVER).unwrap_or(url);
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == url)
        .cloned()
        .collect()
}

async fn model_bytes() -> Vec<u8> {
    let resp: web_sys::Response = JsFuture::from(fetch_str(&format!("{SERVER}/models/{MODEL}")))
        .await
        .unwrap()
        .unchecked_into();
    let buf = JsFuture::from(resp.array_buffer().unwrap()).await.unwrap();
    Uint8Array::new(&buf).to_vec()
}

/// A query part unique to this run, so a reused server's one-shot cuts and log do not carry over.
fn run_id() -> String {
    thread_local!(static ID: String = format!("{}", js_sys::Date::now() as u64));
    ID.with(|i| i.clone())
}

fn options(chunk: u64, retries: u32) -> fetch::Options<'static> {
    fetch::Options {
        chunk_size: chunk,
        sha256: None,
        retries,
        signal: None,
        on_progress: &|_, _, _| {},
    }
}

fn js_options(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn code_of(e: &JsValue) -> String {
    Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

/// Every stored byte of `url`, read back through the chunk store the engine uses.
async fn stored(db: &Db, url: &str) -> Vec<u8> {
    let record = db.file(url).await.unwrap().expect("record stored");
    let store = IdbChunks::new(db.clone(), record.clone());
    let mut out = vec![0u8; record.size as usize];
    store.read_at(0, &mut out).await.unwrap();
    out
}

#[wasm_bindgen_test]
async fn store_round_trip() {
    let db = Db::open().await.unwrap();
    let url = "test://round-trip";
    db.delete_file(url).await.unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    db.put_chunk(url, 0, &Uint8Array::from(&data[..65_536]))
        .await
        .unwrap();
    db.put_chunk(url, 1, &Uint8Array::from(&data[65_536..]))
        .await
        .unwrap();
    let mut indices = db.chunk_indices(url).await.unwrap();
    indices.sort();
    assert_eq!(indices, vec![0, 1]);
    assert_eq!(
        db.read_chunk(url, 1).await.unwrap().to_vec(),
        &data[65_536..]
    );
    db.delete_file(url).await.unwrap();
    assert!(db.chunk_indices(url).await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn download_resumes_after_a_cut_fetching_only_missing_ranges() {
    let db = Db::open().await.unwrap();
    let cut = 5 * CHUNK + 1234;
    let url = format!(
        "{SERVER}/models/{MODEL}?t=resume&cut={cut}&run={}",
        run_id()
    );
    db.delete_file(&url).await.unwrap();
    let err = fetch::ensure(&db, &url, &options(CHUNK, 0))
        .await
        .expect_err("the cut fails a download that may not retry");
    assert!(
        matches!(err, candlelight::download::DownloadError::Network { .. }),
        "{err:?}"
    );
    let mut have = db.chunk_indices(&url).await.unwrap();
    have.sort();
    assert_eq!(
        have,
        (0..5).collect::<Vec<u64>>(),
        "the five chunks before the cut are kept"
    );

    let record = fetch::ensure(&db, &url, &options(CHUNK, 0)).await.unwrap();
    assert!(
        record.complete && record.verified,
        "the ETag's SHA-256 was checked: {record:?}"
    );
    let log = model_requests(&url).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0]["range"], "bytes=0-");
    assert_eq!(log[0]["sent"].as_u64().unwrap(), cut);
    assert_eq!(
        log[1]["range"],
        format!("bytes={}-{}", 5 * CHUNK, record.size - 1),
        "only the missing range"
    );
    assert_eq!(stored(&db, &url).await, model_bytes().await);
    assert_eq!(
        db.chunk_indices(&url).await.unwrap().len() as u64,
        chunk_count(record.size, CHUNK)
    );
}

#[wasm_bindgen_test]
async fn an_aborted_download_keeps_its_chunks_and_resumes() {
    let db = Db::open().await.unwrap();
    let url = format!("{SERVER}/models/{MODEL}?t=abort&run={}", run_id());
    db.delete_file(&url).await.unwrap();
    let controller = web_sys::AbortController::new().unwrap();
    let signal = controller.signal();
    let abort_after_three = move |phase: &str, loaded: u64, _total: u64| {
        if phase == "download" && loaded >= 3 * CHUNK {
            controller.abort();
        }
    };
    let opts = fetch::Options {
        signal: Some(signal),
        on_progress: &abort_after_three,
        ..options(CHUNK, 2)
    };
    let err = fetch::ensure(&db, &url, &opts).await.expect_err("aborted");
    assert_eq!(err, candlelight::download::DownloadError::Aborted);
    let kept = db.chunk_indices(&url).await.unwrap().len() as u64;
    assert!(
        kept >= 3,
        "the chunks stored before the abort are kept ({kept})"
    );

    let record = fetch::ensure(&db, &url, &options(CHUNK, 0)).await.unwrap();
    let log = model_requests(&url).await;
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[1]["range"],
        format!("bytes={}-{}", kept * CHUNK, record.size - 1)
    );
    assert_eq!(stored(&db, &url).await, model_bytes().await);
}

#[wasm_bindgen_test]
async fn a_damaged_or_evicted_chunk_is_detected_and_fetched_again() {
    let db = Db::open().await.unwrap();
    let url = format!("{SERVER}/models/{MODEL}?t=damage&run={}", run_id());
    db.delete_file(&url).await.unwrap();
    let load = |url: String| async move {
        // On the CPU: this test is about chunks, and three GPU loads (each compiling the
        // kernels on SwiftShader) can outlast the test runner's timeout.
        EngineCore::load(
            url.into(),
            js_options(&[
                ("chunkSize", (CHUNK as f64).into()),
                ("backend", "cpu".into()),
            ]),
        )
        .await
    };
    load(url.clone()).await.unwrap();
    let good = db.read_chunk(&url, 3).await.unwrap();
    let sha = sha256_hex(&good).await.unwrap();
    let bad = good.slice(0, good.length());
    bad.set_index(100, bad.get_index(100) ^ 0x40);
    db.put_chunk_with_hash(&url, 3, &bad, &sha).await.unwrap();
    assert!(matches!(
        db.read_chunk(&url, 3).await,
        Err(candlelight::store::StoreError::CorruptChunk { index: 3 })
    ));

    let before = model_requests(&url).await.len();
    load(url.clone()).await.expect("the load heals the chunk");
    let log = model_requests(&url).await;
    assert_eq!(log.len(), before + 1, "{log:?}");
    assert_eq!(
        log[before]["range"],
        format!("bytes={}-{}", 3 * CHUNK, 4 * CHUNK - 1)
    );
    assert_eq!(stored(&db, &url).await, model_bytes().await);

    // A chunk the browser evicted is fetched again the same way.
    db.delete_chunk(&url, 7).await.unwrap();
    let before = model_requests(&url).await.len();
    load(url.clone())
        .await
        .expect("the load refetches the missing chunk");
    let log = model_requests(&url).await;
    assert_eq!(log.len(), before + 1, "{log:?}");
    assert_eq!(
        log[before]["range"],
        format!("bytes={}-{}", 7 * CHUNK, 8 * CHUNK - 1)
    );
}

#[wasm_bindgen_test]
async fn a_server_that_ignores_range_still_works() {
    let db = Db::open().await.unwrap();
    let url = format!(
        "{SERVER}/models/{MODEL}?t=norange&noRange=1&cut={}&run={}",
        2 * CHUNK + 99,
        run_id()
    );
    db.delete_file(&url).await.unwrap();
    let record = fetch::ensure(&db, &url, &options(CHUNK, 2)).await.unwrap();
    assert!(record.verified);
    let log = model_requests(&url).await;
    assert_eq!(log.len(), 2, "one cut, one retry: {log:?}");
    assert!(log.iter().all(|e| e["status"] == 200));
    assert_eq!(stored(&db, &url).await, model_bytes().await);
}

#[wasm_bindgen_test]
async fn too_big_for_the_quota_fails_before_storing_anything() {
    let db = Db::open().await.unwrap();
    let url = format!("{SERVER}/models/huge.gguf");
    db.delete_file(&url).await.unwrap();
    let err = EngineCore::load(url.clone().into(), JsValue::UNDEFINED)
        .await
        .err()
        .expect("quota error");
    assert_eq!(code_of(&err), "quota_exceeded");
    assert!(
        Reflect::get(&err, &"needed".into())
            .unwrap()
            .as_f64()
            .unwrap()
            >= 2f64.powi(50)
    );
    assert!(db.file(&url).await.unwrap().is_none());
    assert!(db.chunk_indices(&url).await.unwrap().is_empty());
}

#[wasm_bindgen_test]
async fn errors_reach_javascript_with_stable_codes() {
    let err = EngineCore::load(
        format!("{SERVER}/models/{MODEL}?t=down&down=1").into(),
        js_options(&[("retries", 0.into())]),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(code_of(&err), "network");
    assert_eq!(
        Reflect::get(&err, &"status".into()).unwrap().as_f64(),
        Some(503.0)
    );
    let err = EngineCore::load(
        format!("{SERVER}/models/missing.gguf").into(),
        JsValue::UNDEFINED,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(code_of(&err), "network");
    let not_gguf = web_sys::Blob::new_with_u8_array_sequence(&js_sys::Array::of1(
        &Uint8Array::from(&b"definitely not a model"[..]),
    ))
    .unwrap();
    let err = EngineCore::load(not_gguf.into(), JsValue::UNDEFINED)
        .await
        .err()
        .unwrap();
    assert_eq!(code_of(&err), "invalid_model");
    let err = EngineCore::load(
        format!("{SERVER}/models/{MODEL}").into(),
        js_options(&[("backend", "tpu".into())]),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(code_of(&err), "invalid_request");
    let err = EngineCore::load(
        format!("{SERVER}/models/{MODEL}").into(),
        js_options(&[("chunkSize", 1e12.into())]),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(code_of(&err), "invalid_request");
}

#[wasm_bindgen_test]
async fn generation_from_indexeddb_matches_the_native_engine() {
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    assert_eq!(
        format!("{}.gguf", reference["fixture"].as_str().unwrap()),
        MODEL
    );
    let progress = js_sys::Array::new();
    let record = progress.clone();
    let on_progress = Closure::<dyn Fn(JsValue)>::new(move |ev: JsValue| {
        record.push(&ev);
    });
    let url = format!("{SERVER}/models/{MODEL}?t=generate&run={}", run_id());
    candlelight::web::delete_model(url.clone()).await.unwrap();
    let engine = EngineCore::load(
        url.into(),
        js_options(&[
            ("onProgress", on_progress.as_ref().clone()),
            ("chunkSize", (CHUNK as f64).into()),
            ("backend", "cpu".into()),
        ]),
    )
    .await
    .unwrap();
    let phases: Vec<String> = progress
        .iter()
        .map(|e| {
            Reflect::get(&e, &"phase".into())
                .unwrap()
                .as_string()
                .unwrap()
        })
        .collect();
    for phase in ["download", "verify", "load"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "{phase} reported: {phases:?}"
        );
    }
    let body = js_sys::JSON::parse(&reference["request"].to_string()).unwrap();
    let c = engine.start_async(body).await.unwrap();
    let mut chunks = 0;
    loop {
        let step = engine.step_async(&c).await.unwrap();
        if step.is_null() {
            break;
        }
        chunks += js_sys::Array::from(&step).length();
    }
    assert!(chunks > 2);
    let expected: Vec<u32> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    assert_eq!(
        c.tokens(),
        expected,
        "wasm SIMD128 engine, same seed, same tokens as native"
    );
    let response = c.response().unwrap();
    let usage = Reflect::get(&response, &"usage".into()).unwrap();
    assert_eq!(
        Reflect::get(&usage, &"completion_tokens".into())
            .unwrap()
            .as_f64(),
        Some(expected.len() as f64)
    );
}

fn info(engine: &EngineCore, key: &str) -> JsValue {
    Reflect::get(&engine.info().unwrap(), &key.into()).unwrap()
}

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
    let c = engine.start_async(body).await.unwrap();
    while !engine.step_async(&c).await.unwrap().is_null() {}
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
    let c = engine.start_async(body.clone()).await.unwrap();
    for _ in 0..6 {
        engine.step_async(&c).await.unwrap();
    }
    assert!(engine.lose_device());
    while !engine
        .step_async(&c)
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
    let c = strict.start_async(body).await.unwrap();
    strict.step_async(&c).await.unwrap();
    assert!(strict.lose_device());
    let mut err = None;
    for _ in 0..3 {
        if let Err(e) = strict.step_async(&c).await {
            err = Some(e);
            break;
        }
    }
    assert_eq!(
        code_of(&err.expect("backend 'gpu' reports the loss")),
        "device_lost"
    );
}
