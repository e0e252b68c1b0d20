//! wasm-bindgen exports and browser I/O only: the engine ([`EngineCore`]), the model cache, the
//! router's service-worker glue ([`RouterCore`]), the answer cache and conversations in
//! IndexedDB, the device probe, and error conversion. Every decision they need lives in a module
//! native tests reach; `www/lib/` wraps these in the JavaScript API.

mod answers;
mod conversations;
mod engine;
mod error;
mod idb;
mod probe;
mod router;
mod sealed;
mod sse;
#[cfg(feature = "threads")]
mod threads;

use js_sys::Reflect;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub use engine::{CompletionCore, EngineCore};
pub use error::{error_answer, error_codes};
pub use probe::{assess_device, probe_device};
pub use router::RouterCore;
pub use sse::SseDecoderCore;

use crate::openai::ApiError;
use crate::store::indexed_db::ModelDb;

#[wasm_bindgen(start)]
fn install_panic_hook() {
    console_error_panic_hook::set_once();
}

/// Threads the CPU backend computes on: the pool's in the threaded build, else 1.
#[wasm_bindgen(js_name = computeThreads)]
pub fn compute_threads() -> usize {
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// Whether this build dots 4- and 5-bit weights with relaxed SIMD's i8 dot product.
#[wasm_bindgen(js_name = relaxedSimd)]
pub fn relaxed_simd() -> bool {
    cfg!(target_feature = "relaxed-simd")
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| ApiError::internal(e.to_string()).into())
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// Bytes of wasm linear memory: the peak so far, since it never shrinks.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// Model files stored in IndexedDB: url, size, complete, verified, sha256.
#[wasm_bindgen(js_name = cachedModels)]
pub async fn cached_models() -> Result<JsValue, JsValue> {
    let db = ModelDb::open().await.map_err(ApiError::from)?;
    to_js(&db.files().await.map_err(ApiError::from)?)
}

/// Deletes a stored model file and its chunks; false if it was not stored.
#[wasm_bindgen(js_name = deleteModel)]
pub async fn delete_model(url: String) -> Result<bool, JsValue> {
    let url = engine::absolute_url(&url);
    let db = ModelDb::open().await.map_err(ApiError::from)?;
    let known = db.file(&url).await.map_err(ApiError::from)?.is_some();
    db.delete_file(&url).await.map_err(ApiError::from)?;
    Ok(known)
}

/// Whether the server has another version of a stored model file than the one stored, without
/// downloading it: `{ url, stored, current, updateAvailable }`. Options: `hubMirrors` (origins
/// read as Hugging Face), `signal`.
#[wasm_bindgen(js_name = checkForUpdate)]
pub async fn check_for_update(url: String, options: JsValue) -> Result<JsValue, JsValue> {
    let url = engine::absolute_url(&url);
    let mirrors = get(&options, "hubMirrors");
    let hub_mirrors: Vec<String> = if mirrors.is_undefined() || mirrors.is_null() {
        Vec::new()
    } else {
        serde_wasm_bindgen::from_value(mirrors)
            .map_err(|e| ApiError::invalid(format!("hubMirrors: {e}")))?
    };
    let opts = crate::download::fetch::Options {
        chunk_size: crate::download::DEFAULT_CHUNK_SIZE,
        sha256: None,
        retries: 0,
        hub_mirrors,
        signal: get(&options, "signal")
            .dyn_into::<web_sys::AbortSignal>()
            .ok(),
        on_progress: &|_, _, _| {},
    };
    let db = ModelDb::open().await.map_err(ApiError::from)?;
    let check = crate::download::remote::check_for_update(&db, &url, &opts)
        .await
        .map_err(ApiError::from)?;
    to_js(&check)
}
