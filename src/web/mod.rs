//! wasm-bindgen exports, and nothing that tests need besides them: `EngineCore` (load a model
//! from a URL through IndexedDB, or from a `Blob`; answer chat-completions requests one step at a
//! time) and the cache listing. `www/lib/` wraps these in the OpenAI-shaped JavaScript API.

mod error;

use js_sys::{Function, Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub use error::WebError;

use crate::download::{self, fetch};
use crate::engine::cpu::CpuBackend;
use crate::gguf::{GgufError, GgufFile};
use crate::engine::EngineError;
use crate::openai::{ChatCompletionRequest, Completion, LocalModel};
use crate::store::indexed_db::{BlobChunks, Db, IdbChunks};
use crate::store::{AsyncChunkStore, StoreError};

/// Context positions when the caller names none: the KV cache grows up to this.
const DEFAULT_CONTEXT: usize = 4096;
/// Bounds on a caller's chunk size: IndexedDB records of a few bytes or of gigabytes both fail.
const MIN_CHUNK: u64 = 4096;
const MAX_CHUNK: u64 = 512 << 20;

#[wasm_bindgen(start)]
fn install_panic_hook() {
    console_error_panic_hook::set_once();
}

/// The plain-data part of `Engine.load`'s options (callbacks and the signal are read apart).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LoadOptions {
    backend: Option<String>,
    context_length: Option<usize>,
    sha256: Option<String>,
    chunk_size: Option<u64>,
    retries: Option<u32>,
    model_id: Option<String>,
}

/// What `engine.info()` tells about the loaded model.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo {
    id: String,
    source: String,
    size: u64,
    architecture: String,
    context_length: usize,
    backend: &'static str,
    sha256: Option<String>,
    verified: bool,
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| WebError::new("internal", e.to_string()).into())
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// `source` resolved against the page or worker location, as IndexedDB keys it.
fn absolute_url(source: &str) -> String {
    let base = Reflect::get(&js_sys::global(), &"location".into())
        .ok()
        .and_then(|l| Reflect::get(&l, &"href".into()).ok())
        .and_then(|h| h.as_string());
    match base.and_then(|b| web_sys::Url::new_with_base(source, &b).ok()) {
        Some(u) => u.href(),
        None => source.to_string(),
    }
}

/// A chunk to fetch again: damaged, or gone (the browser may evict storage that is not persisted).
fn bad_chunk(e: &EngineError) -> Option<u64> {
    match e {
        EngineError::Gguf(GgufError::Store(StoreError::CorruptChunk { index } | StoreError::MissingChunk { index })) => Some(*index),
        _ => None,
    }
}

async fn open_model<S: AsyncChunkStore>(
    store: &S,
    id: &str,
    context: usize,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<(LocalModel, GgufFile), EngineError> {
    let file = GgufFile::read_from(store).await?;
    let mut backend = CpuBackend::load_from(&file, store, &mut |done, total| progress("load", done, total)).await?;
    backend.limit_context(context);
    let model = LocalModel::new(id, &file, Box::new(backend))?;
    Ok((model, file))
}

/// A model loaded in this thread, answering chat-completions requests step by step.
#[wasm_bindgen]
pub struct EngineCore {
    model: LocalModel,
    info: ModelInfo,
}

#[wasm_bindgen]
impl EngineCore {
    /// Loads a GGUF model from a URL (downloaded into IndexedDB once, resumably) or a Blob/File.
    pub async fn load(source: JsValue, options: JsValue) -> Result<EngineCore, JsValue> {
        Self::load_inner(source, options).await.map_err(JsValue::from)
    }

    async fn load_inner(source: JsValue, options: JsValue) -> Result<EngineCore, WebError> {
        let opts: LoadOptions = if options.is_object() {
            serde_wasm_bindgen::from_value(options.clone()).map_err(|e| WebError::new("invalid_request", e.to_string()))?
        } else {
            LoadOptions::default()
        };
        match opts.backend.as_deref() {
            None | Some("auto" | "cpu") => {}
            Some("gpu") => return Err(WebError::new("backend_unavailable", "the WebGPU backend is not available in this build; use backend 'auto' or 'cpu'")),
            Some(other) => return Err(WebError::new("invalid_request", format!("backend {other:?} is not one of auto, gpu, cpu"))),
        }
        let on_progress = get(&options, "onProgress").dyn_into::<Function>().ok();
        let signal = get(&options, "signal").dyn_into::<web_sys::AbortSignal>().ok();
        let progress = |phase: &str, loaded: u64, total: u64| {
            if let Some(f) = &on_progress {
                let ev = Object::new();
                let _ = Reflect::set(&ev, &"phase".into(), &phase.into());
                let _ = Reflect::set(&ev, &"loaded".into(), &(loaded as f64).into());
                let _ = Reflect::set(&ev, &"total".into(), &(total as f64).into());
                let _ = f.call1(&JsValue::NULL, &ev);
            }
        };
        if opts.chunk_size.is_some_and(|c| !(MIN_CHUNK..=MAX_CHUNK).contains(&c)) {
            return Err(WebError::new("invalid_request", format!("chunkSize must be between {MIN_CHUNK} and {MAX_CHUNK} bytes")));
        }
        let context = opts.context_length.unwrap_or(DEFAULT_CONTEXT);
        let aborted = || signal.as_ref().is_some_and(|s| s.aborted());

        if let Some(url) = source.as_string() {
            let url = absolute_url(&url);
            let id = opts.model_id.clone().unwrap_or_else(|| url.rsplit('/').next().unwrap_or(&url).to_string());
            let db = Db::open().await?;
            let dl = fetch::Options {
                chunk_size: opts.chunk_size.unwrap_or(download::DEFAULT_CHUNK_SIZE),
                sha256: opts.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                retries: opts.retries.unwrap_or(4),
                signal: signal.clone(),
                on_progress: &progress,
            };
            // A chunk that fails its check while loading is fetched again, then the load retried.
            for _ in 0..3 {
                let record = fetch::ensure(&db, &url, &dl).await?;
                let store = IdbChunks::new(db.clone(), record.clone());
                match open_model(&store, &id, context, &progress).await {
                    Ok((model, file)) => {
                        if aborted() {
                            return Err(download::DownloadError::Aborted.into());
                        }
                        let info = ModelInfo {
                            id,
                            source: url,
                            size: record.size,
                            architecture: file.get_str("general.architecture").unwrap_or("").into(),
                            context_length: model.context_length(),
                            backend: "cpu",
                            sha256: record.sha256.clone(),
                            verified: record.verified,
                        };
                        return Ok(EngineCore { model, info });
                    }
                    Err(e) => match bad_chunk(&e) {
                        Some(index) => fetch::forget_chunk(&db, &url, index).await?,
                        None => return Err(e.into()),
                    },
                }
            }
            return Err(WebError::new("integrity", "model chunks keep failing their checks after being fetched again"));
        }
        if let Ok(blob) = source.clone().dyn_into::<web_sys::Blob>() {
            let name = get(&source, "name").as_string().unwrap_or_else(|| "model.gguf".into());
            let id = opts.model_id.clone().unwrap_or_else(|| name.clone());
            let store = BlobChunks::new(blob);
            let (model, file) = open_model(&store, &id, context, &progress).await?;
            let info = ModelInfo {
                id,
                source: name,
                size: store.len(),
                architecture: file.get_str("general.architecture").unwrap_or("").into(),
                context_length: model.context_length(),
                backend: "cpu",
                sha256: None,
                verified: false,
            };
            return Ok(EngineCore { model, info });
        }
        Err(WebError::new("invalid_request", "source must be a URL string, a File or a Blob"))
    }

    /// The loaded model: id, source, size, architecture, context length, backend.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.info)
    }

    /// Checks a chat-completions request body and runs its prompt; step the result with `step`.
    pub fn start(&mut self, body: JsValue) -> Result<CompletionCore, JsValue> {
        let req: ChatCompletionRequest =
            serde_wasm_bindgen::from_value(body).map_err(|e| WebError::new("invalid_request", e.to_string()))?;
        let id = format!("chatcmpl-{:012x}", (js_sys::Math::random() * 2f64.powi(48)) as u64);
        let created = (js_sys::Date::now() / 1000.0) as u64;
        let inner = self.model.start(req, id, created).map_err(WebError::from)?;
        Ok(CompletionCore { inner })
    }

    /// How many tokens the prompt of a request body would take, without running the model.
    #[wasm_bindgen(js_name = countTokens)]
    pub fn count_tokens(&self, body: JsValue) -> Result<usize, JsValue> {
        let req: ChatCompletionRequest =
            serde_wasm_bindgen::from_value(body).map_err(|e| WebError::new("invalid_request", e.to_string()))?;
        Ok(self.model.plan(&req).map_err(WebError::from)?.0.prompt.len())
    }

    /// Advances `completion` by one token without building chunk objects (for answers that are
    /// not streamed); false once it is over.
    pub fn advance(&mut self, completion: &mut CompletionCore) -> Result<bool, JsValue> {
        Ok(self.model.step(&mut completion.inner).map_err(WebError::from)?.is_some())
    }

    /// Advances `completion` by one token: an array of chunk objects (maybe empty), or null once
    /// it is over.
    pub fn step(&mut self, completion: &mut CompletionCore) -> Result<JsValue, JsValue> {
        match self.model.step(&mut completion.inner).map_err(WebError::from)? {
            Some(chunks) => to_js(&chunks),
            None => Ok(JsValue::NULL),
        }
    }
}

/// One answer in progress.
#[wasm_bindgen]
pub struct CompletionCore {
    inner: Completion,
}

#[wasm_bindgen]
impl CompletionCore {
    /// Stops generating; the next `step` ends the answer.
    pub fn abort(&mut self) {
        self.inner.abort();
    }

    pub fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The whole answer (`chat.completion` object) once finished, else null.
    pub fn response(&self) -> Result<JsValue, JsValue> {
        match self.inner.response() {
            Some(r) => to_js(&r),
            None => Ok(JsValue::NULL),
        }
    }

    /// Token ids generated so far.
    pub fn tokens(&self) -> Vec<u32> {
        self.inner.tokens().to_vec()
    }
}

/// Bytes of wasm linear memory: the peak so far, since it never shrinks.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>().buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
}

/// Model files stored in IndexedDB: url, size, complete, verified, sha256.
#[wasm_bindgen(js_name = cachedModels)]
pub async fn cached_models() -> Result<JsValue, JsValue> {
    let db = Db::open().await.map_err(WebError::from)?;
    to_js(&db.files().await.map_err(WebError::from)?)
}

/// Deletes a stored model file and its chunks; false if it was not stored.
#[wasm_bindgen(js_name = deleteModel)]
pub async fn delete_model(url: String) -> Result<bool, JsValue> {
    let url = absolute_url(&url);
    let db = Db::open().await.map_err(WebError::from)?;
    let known = db.file(&url).await.map_err(WebError::from)?.is_some();
    db.delete_file(&url).await.map_err(WebError::from)?;
    Ok(known)
}
