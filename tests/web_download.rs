//! In a real browser (headless Chromium, inside a dedicated worker as the engine runs): the
//! IndexedDB chunk store, downloads that resume after a cut or an abort, a server that ignores
//! Range, the quota check, and errors that reach JavaScript with their stable codes.
//!
//! Needs the model server: `node scripts/serve.mjs --port 8787` with fixtures/ generated
//! (`cargo run --release --example make_fixtures -- fixtures tiny`); scripts/test_web.sh does both.
#![cfg(target_arch = "wasm32")]

mod in_browser;

use candlelight::download::{chunk_count, fetch};
use candlelight::store::indexed_db::ModelDb;
use candlelight::web::EngineCore;
use in_browser::*;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn store_round_trip() {
    let db = ModelDb::open().await.unwrap();
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
    let db = ModelDb::open().await.unwrap();
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

    let sha256 = Some(sha256_of(&model_bytes().await).await);
    let opts = fetch::Options {
        sha256,
        ..options(CHUNK, 0)
    };
    let record = fetch::ensure(&db, &url, &opts).await.unwrap();
    assert!(
        record.complete && record.verified,
        "the given SHA-256 was checked: {record:?}"
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
    let db = ModelDb::open().await.unwrap();
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
async fn a_server_that_ignores_range_still_works() {
    let db = ModelDb::open().await.unwrap();
    let url = format!(
        "{SERVER}/models/{MODEL}?t=norange&noRange=1&cut={}&run={}",
        2 * CHUNK + 99,
        run_id()
    );
    db.delete_file(&url).await.unwrap();
    let opts = fetch::Options {
        sha256: Some(sha256_of(&model_bytes().await).await),
        ..options(CHUNK, 2)
    };
    let record = fetch::ensure(&db, &url, &opts).await.unwrap();
    assert!(record.verified);
    let log = model_requests(&url).await;
    assert_eq!(log.len(), 2, "one cut, one retry: {log:?}");
    assert!(log.iter().all(|e| e["status"] == 200));
    assert_eq!(stored(&db, &url).await, model_bytes().await);
}

#[wasm_bindgen_test]
async fn too_big_for_the_quota_fails_before_storing_anything() {
    let db = ModelDb::open().await.unwrap();
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
async fn a_resume_answered_with_a_weak_etag_continues_the_same_file() {
    let db = ModelDb::open().await.unwrap();
    let cut = 3 * CHUNK + 77;
    let url = format!(
        "{SERVER}/models/{MODEL}?t=weak&weakEtag=1&cut={cut}&run={}",
        run_id()
    );
    db.delete_file(&url).await.unwrap();
    fetch::ensure(&db, &url, &options(CHUNK, 0))
        .await
        .expect_err("cut");
    let record = fetch::ensure(&db, &url, &options(CHUNK, 0)).await.unwrap();
    let log = model_requests(&url).await;
    assert_eq!(log.len(), 2, "W/\"x\" is \"x\": no start over: {log:?}");
    assert_eq!(
        log[1]["range"],
        format!("bytes={}-{}", 3 * CHUNK, record.size - 1)
    );
    assert_eq!(stored(&db, &url).await, model_bytes().await);
}

#[wasm_bindgen_test]
async fn a_206_from_the_wrong_offset_is_an_error_and_stores_nothing() {
    let db = ModelDb::open().await.unwrap();
    let cut = 3 * CHUNK + 77;
    let url = format!(
        "{SERVER}/models/{MODEL}?t=wrongstart&wrongStart=1&cut={cut}&run={}",
        run_id()
    );
    db.delete_file(&url).await.unwrap();
    fetch::ensure(&db, &url, &options(CHUNK, 0))
        .await
        .expect_err("cut");
    let err = fetch::ensure(&db, &url, &options(CHUNK, 0))
        .await
        .expect_err("a 206 from byte 0 for a resume from chunk 3");
    assert!(
        matches!(
            err,
            candlelight::download::DownloadError::WrongRange { asked, got: 0, .. } if asked == 3 * CHUNK
        ),
        "{err:?}"
    );
    let mut have = db.chunk_indices(&url).await.unwrap();
    have.sort();
    assert_eq!(have, vec![0, 1, 2], "nothing more was stored");
    let bytes = model_bytes().await;
    for i in 0..3u64 {
        let chunk = db.read_chunk(&url, i).await.unwrap().to_vec();
        let at = (i * CHUNK) as usize;
        assert_eq!(chunk, bytes[at..at + CHUNK as usize], "chunk {i}");
    }
}
