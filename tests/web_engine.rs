//! In a real browser (headless Chromium, inside a dedicated worker as the engine runs), on the
//! CPU path (wasm SIMD128): a whole generation from IndexedDB whose tokens equal the native
//! engine's, and a damaged or evicted chunk found while loading (by its XXH3, or by its SHA-256
//! where it was stored without one) and fetched again.
//!
//! Needs the model server: `node scripts/serve.mjs --port 8787` with fixtures/ generated
//! (`cargo run --release --example make_fixtures -- fixtures tiny`); scripts/test_web.sh does both.
#![cfg(target_arch = "wasm32")]

mod in_browser;

use candlelight::store::indexed_db::ModelDb;
use candlelight::web::EngineCore;
use in_browser::*;
use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen(inline_js = r#"
function change_chunk(url, index, change) {
  // Read in one transaction and written in another: a Blob's bytes are read in between, and a
  // transaction commits while nothing of it is pending.
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('candlelight');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => resolve(open.result);
  }).then((db) => new Promise((resolve, reject) => {
    const get = db.transaction('chunks', 'readonly').objectStore('chunks').get([url, index]);
    get.onsuccess = () => resolve([db, get.result]);
    get.onerror = () => reject(get.error);
  })).then(async ([db, record]) => {
    const blob = record.data instanceof Blob;
    const was = blob && typeof record.xxh3 === 'string' && typeof record.sha256 === 'string';
    const bytes = blob ? new Uint8Array(await record.data.arrayBuffer()) : record.data;
    change(record, bytes);
    // Bytes changed in place: a Blob's are written back as a new Blob.
    if (record.data instanceof Blob) record.data = new Blob([bytes]);
    await new Promise((resolve, reject) => {
      const tx = db.transaction('chunks', 'readwrite');
      tx.objectStore('chunks').put(record, [url, index]);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
    });
    return was;
  });
}
export function flip_a_bit(url, index) {
  return change_chunk(url, index, (record, bytes) => { bytes[100] ^= 0x40; });
}
export function forget_xxh3(url, index) {
  return change_chunk(url, index, (record, bytes) => { delete record.xxh3; record.data = bytes; });
}
"#)]
extern "C" {
    /// Damages a stored chunk as a failing disk would: one bit of its bytes, its hashes kept.
    /// Resolves to whether the chunk was stored as this version stores it: a Blob of its bytes
    /// with both its hashes.
    #[wasm_bindgen(catch)]
    async fn flip_a_bit(url: &str, index: u32) -> Result<JsValue, JsValue>;
    /// Stores a chunk as versions before XXH3 did: its bytes as a byte array, no XXH3.
    #[wasm_bindgen(catch)]
    async fn forget_xxh3(url: &str, index: u32) -> Result<JsValue, JsValue>;
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
    let sha256 = sha256_of(&model_bytes().await).await;
    let engine = EngineCore::load(
        url.into(),
        js_options(&[
            ("onProgress", on_progress.as_ref().clone()),
            ("chunkSize", (CHUNK as f64).into()),
            ("backend", "cpu".into()),
            ("sha256", sha256.as_str().into()),
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
    let c = answer(&engine, body).await.unwrap();
    let mut chunks = 0;
    loop {
        let piece = step(&c).await.unwrap();
        if piece.is_null() {
            break;
        }
        chunks += js_sys::Array::from(&piece).length();
    }
    assert!(chunks > 2);
    let expected: Vec<u32> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    assert_eq!(
        c.tokens(),
        expected,
        "wasm SIMD128 engine, greedy, same tokens as native"
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

#[wasm_bindgen_test]
async fn a_damaged_or_evicted_chunk_is_detected_and_fetched_again() {
    let db = ModelDb::open().await.unwrap();
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
    // Stored as a Blob with both hashes; its XXH3 finds the damage.
    assert_eq!(flip_a_bit(&url, 3).await.unwrap(), true);
    assert!(matches!(
        db.read_chunk(&url, 3).await,
        Err(candlelight::store::StoreError::CorruptChunk { index: 3 })
    ));
    // A chunk stored as bytes without XXH3 (by an older version) is checked by its SHA-256: it
    // reads while intact, and its damage is found.
    forget_xxh3(&url, 5).await.unwrap();
    assert!(db.read_chunk(&url, 5).await.is_ok());
    assert_eq!(flip_a_bit(&url, 5).await.unwrap(), false);
    assert!(matches!(
        db.read_chunk(&url, 5).await,
        Err(candlelight::store::StoreError::CorruptChunk { index: 5 })
    ));

    let before = model_requests(&url).await.len();
    load(url.clone()).await.expect("the load heals both chunks");
    let log = model_requests(&url).await;
    assert_eq!(log.len(), before + 2, "{log:?}");
    assert_eq!(
        log[before]["range"],
        format!("bytes={}-{}", 3 * CHUNK, 4 * CHUNK - 1)
    );
    assert_eq!(
        log[before + 1]["range"],
        format!("bytes={}-{}", 5 * CHUNK, 6 * CHUNK - 1)
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
