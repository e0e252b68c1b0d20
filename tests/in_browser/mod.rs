//! What the browser tests share: the model server they download from (scripts/serve.mjs, its
//! address in `CANDLELIGHT_MODEL_SERVER`), its request log, and small steps of the engine's API.
#![allow(dead_code)]

use candlelight::download::fetch;
use candlelight::store::indexed_db::{IdbChunks, ModelDb};
use candlelight::store::ChunkStore;
use candlelight::web::{CompletionCore, EngineCore};
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub const SERVER: &str = match option_env!("CANDLELIGHT_MODEL_SERVER") {
    Some(s) => s,
    None => "http://127.0.0.1:8787",
};
pub const MODEL: &str = "tiny-qwen3-q8_0.gguf";
pub const CHUNK: u64 = 64 << 10;
pub const REFERENCE: &str = include_str!("../data/web_generation.json");

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = fetch)]
    pub fn fetch_str(url: &str) -> js_sys::Promise;
}

pub async fn get_json(path: &str) -> serde_json::Value {
    get_json_at(&format!("{SERVER}{path}")).await
}

pub async fn get_json_at(url: &str) -> serde_json::Value {
    let resp: web_sys::Response = JsFuture::from(fetch_str(url))
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
pub async fn model_requests(url: &str) -> Vec<serde_json::Value> {
    let log = get_json("/__log").await;
    let url = url.strip_prefix(SERVER).unwrap_or(url);
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["url"] == url)
        .cloned()
        .collect()
}

pub async fn model_bytes() -> Vec<u8> {
    file_bytes(MODEL).await
}

/// A model file the server holds, whole.
pub async fn file_bytes(name: &str) -> Vec<u8> {
    let resp: web_sys::Response = JsFuture::from(fetch_str(&format!("{SERVER}/models/{name}")))
        .await
        .unwrap()
        .unchecked_into();
    let buf = JsFuture::from(resp.array_buffer().unwrap()).await.unwrap();
    Uint8Array::new(&buf).to_vec()
}

/// The SHA-256 of `bytes`, lower-case hex, as the browser computes it.
pub async fn sha256_of(bytes: &[u8]) -> String {
    candlelight::store::indexed_db::sha256_hex(&Uint8Array::from(bytes))
        .await
        .unwrap()
}

/// A query part unique to this run, so a reused server's one-shot cuts and log do not carry over.
pub fn run_id() -> String {
    thread_local!(static ID: String = format!("{}", js_sys::Date::now() as u64));
    ID.with(|i| i.clone())
}

pub fn options(chunk: u64, retries: u32) -> fetch::Options<'static> {
    fetch::Options {
        chunk_size: chunk,
        sha256: None,
        retries,
        hub_mirrors: Vec::new(),
        signal: None,
        on_progress: &|_, _, _| {},
    }
}

pub fn js_options(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

pub fn code_of(e: &JsValue) -> String {
    Reflect::get(e, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default()
}

/// Every stored byte of `url`, read back through the chunk store the engine uses.
pub async fn stored(db: &ModelDb, url: &str) -> Vec<u8> {
    let record = db.file(url).await.unwrap().expect("record stored");
    let store = IdbChunks::new(db.clone(), record.clone());
    let mut out = vec![0u8; record.size as usize];
    store.read_at(0, &mut out).await.unwrap();
    out
}

pub fn info(engine: &EngineCore, key: &str) -> JsValue {
    Reflect::get(&engine.info().unwrap(), &key.into()).unwrap()
}

/// Starts an answer to `body` (waiting for the model's turn, running the prompt).
pub async fn answer(engine: &EngineCore, body: JsValue) -> Result<CompletionCore, JsValue> {
    let c = engine.answer(body)?;
    JsFuture::from(c.start()).await?;
    Ok(c)
}

/// One step of `c`: an array of chunks, or null once the answer is over.
pub async fn step(c: &CompletionCore) -> Result<JsValue, JsValue> {
    JsFuture::from(c.step()).await
}
