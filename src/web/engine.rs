//! The engine's exports: `EngineCore` loads a model (from a URL through IndexedDB, or from a
//! `Blob`) and hands out `CompletionCore`s, each one answer to a chat-completions request, run a
//! step at a time so JavaScript can stream, yield and abort between tokens. What is decided here
//! is only what JavaScript passed; loading, healing, the backend and the queue are native.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::sealed::WebCryptoKey;
use super::{get, to_js};
use crate::download::{self, fetch, DownloadError};
use crate::engine::gpu::GpuOptions;
use crate::engine::{load_backend, load_healing, BackendChoice, ChunkSource, LoadOptions};
use crate::gguf::GgufFile;
use crate::openai::sse;
use crate::openai::{
    ApiError, ChatCompletionChunk, ChatCompletionRequest, ErrorCode, LocalModel, ModelText,
    SharedModel, Turn,
};
use crate::store::indexed_db::{BlobChunks, FileRecord, IdbChunks, ModelDb};
use crate::store::sealed::SealedStore;
use crate::store::{ChunkStore, StoreError};

/// Context positions when the caller names none: the KV cache grows up to this.
const DEFAULT_CONTEXT: usize = 4096;
/// Bounds on a caller's chunk size: IndexedDB records of a few bytes or of gigabytes both fail.
const MIN_CHUNK: u64 = 4096;
const MAX_CHUNK: u64 = 512 << 20;

/// The plain-data part of `Engine.load`'s options (callbacks and the signal are read apart).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JsLoadOptions {
    backend: Option<String>,
    context_length: Option<usize>,
    sha256: Option<String>,
    chunk_size: Option<u64>,
    retries: Option<u32>,
    model_id: Option<String>,
    /// Jinja in place of the file's own chat template.
    chat_template: Option<String>,
    /// Origins whose `resolve` URLs are read as Hugging Face's (mirrors, test hubs).
    hub_mirrors: Vec<String>,
}

/// What was learnt when the model loaded.
#[derive(Debug, Clone)]
struct Facts {
    id: String,
    source: String,
    size: u64,
    architecture: String,
    context_length: usize,
    sha256: Option<String>,
    verified: bool,
}

/// What `engine.info` tells about the loaded model.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelInfo<'a> {
    id: &'a str,
    source: &'a str,
    size: u64,
    architecture: &'a str,
    context_length: usize,
    backend: &'static str,
    adapter: Option<String>,
    shader_f16: bool,
    fallback_reason: Option<String>,
    sha256: Option<&'a str>,
    verified: bool,
}

/// `source` resolved against the page or worker location, as IndexedDB keys it.
pub(super) fn absolute_url(source: &str) -> String {
    let base = Reflect::get(&js_sys::global(), &"location".into())
        .ok()
        .and_then(|l| Reflect::get(&l, &"href".into()).ok())
        .and_then(|h| h.as_string());
    match base.and_then(|b| web_sys::Url::new_with_base(source, &b).ok()) {
        Some(u) => u.href(),
        None => source.to_string(),
    }
}

/// A model file at a URL, kept in IndexedDB: `open` downloads what is missing and verifies it,
/// `forget` drops a chunk that failed its check so the next `open` fetches it again. With a
/// key, the file is sealed (store/sealed.rs) and read through it.
struct IdbSource<'a> {
    db: ModelDb,
    url: String,
    options: fetch::Options<'a>,
    record: RefCell<Option<FileRecord>>,
    key: Option<Rc<WebCryptoKey>>,
}

/// The stored model file, plain or opened through its key.
enum ModelStore {
    Plain(IdbChunks),
    Sealed(SealedStore<IdbChunks, Rc<WebCryptoKey>>),
}

impl ChunkStore for ModelStore {
    fn len(&self) -> u64 {
        match self {
            ModelStore::Plain(s) => s.len(),
            ModelStore::Sealed(s) => s.len(),
        }
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        match self {
            ModelStore::Plain(s) => s.read_at(offset, buf).await,
            ModelStore::Sealed(s) => s.read_at(offset, buf).await,
        }
    }
}

impl ChunkSource for IdbSource<'_> {
    type Store = ModelStore;
    type Error = ApiError;

    async fn open(&self) -> Result<ModelStore, ApiError> {
        let record = fetch::ensure(&self.db, &self.url, &self.options).await?;
        *self.record.borrow_mut() = Some(record.clone());
        let chunks = IdbChunks::new(self.db.clone(), record);
        let Some(key) = &self.key else {
            return Ok(ModelStore::Plain(chunks));
        };
        match SealedStore::open(chunks, key.clone()).await {
            Ok(sealed) => Ok(ModelStore::Sealed(sealed)),
            Err(e @ StoreError::Decryption { .. }) => {
                // Nothing is kept of a file this app cannot open.
                let _ = self.db.delete_file(&self.url).await;
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn forget(&self, index: u64) -> Result<(), ApiError> {
        Ok(fetch::forget_chunk(&self.db, &self.url, index).await?)
    }
}

/// A model loaded in this thread.
#[wasm_bindgen]
pub struct EngineCore {
    shared: Rc<SharedModel>,
    facts: Facts,
}

#[wasm_bindgen]
impl EngineCore {
    /// Loads a GGUF model from a URL (downloaded into IndexedDB once, resumably) or a Blob/File.
    pub async fn load(source: JsValue, options: JsValue) -> Result<EngineCore, JsValue> {
        Ok(Self::load_from(source, options).await?)
    }

    /// The loaded model: id, source, size, architecture, context length, backend (and GPU
    /// adapter, or why `auto` chose the CPU).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let f = &self.facts;
        let p = self.shared.placement();
        to_js(&ModelInfo {
            id: &f.id,
            source: &f.source,
            size: f.size,
            architecture: &f.architecture,
            context_length: f.context_length,
            backend: p.backend,
            adapter: p.adapter,
            shader_f16: p.shader_f16,
            fallback_reason: p.fallback_reason,
            sha256: f.sha256.as_deref(),
            verified: f.verified,
        })
    }

    /// A chat-completions request body as an answer to run: `start` it, then `step` it.
    pub fn answer(&self, body: JsValue) -> Result<CompletionCore, JsValue> {
        let request: ChatCompletionRequest =
            serde_wasm_bindgen::from_value(body).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(CompletionCore {
            shared: self.shared.clone(),
            request: RefCell::new(Some(request)),
            turn: Rc::new(RefCell::new(None)),
            aborted: Rc::new(Cell::new(false)),
            ended: Rc::new(Cell::new(false)),
        })
    }

    /// How many tokens the prompt of a request body would take, without running the model.
    #[wasm_bindgen(js_name = countTokens)]
    pub fn count_tokens(&self, body: JsValue) -> Result<usize, JsValue> {
        let req: ChatCompletionRequest =
            serde_wasm_bindgen::from_value(body).map_err(|e| ApiError::invalid(e.to_string()))?;
        let model = self.shared.model().ok_or_else(busy)?;
        Ok(model
            .prompt(&req)
            .map_err(ApiError::from)?
            .generate
            .prompt
            .len())
    }

    /// Starts (`true`, from zero), stops (`false`) or reads (no argument) where a step's time
    /// goes: JSON per step (the CPU's milliseconds per part; the GPU's dispatches and encode
    /// time).
    pub fn profile(&self, on: Option<bool>) -> Option<String> {
        self.shared.profile(on)
    }

    /// Destroys the GPU device as a driver reset would, so an app can test its fallback;
    /// false when the engine is not on the GPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        self.shared.lose_device()
    }
}

fn busy() -> ApiError {
    ApiError::new(
        ErrorCode::Busy,
        "the engine is in the middle of a step; try again between tokens",
    )
}

/// The model's id in answers when the caller names none: the URL's or file's last part.
fn file_name(source: &str) -> String {
    source.rsplit('/').next().unwrap_or(source).to_string()
}

impl EngineCore {
    /// The model, for the router when it runs in this same thread.
    pub(super) fn shared(&self) -> Rc<SharedModel> {
        self.shared.clone()
    }

    pub(super) fn id(&self) -> &str {
        &self.facts.id
    }

    async fn load_from(source: JsValue, options: JsValue) -> Result<EngineCore, ApiError> {
        let opts: JsLoadOptions = if options.is_object() {
            serde_wasm_bindgen::from_value(options.clone())
                .map_err(|e| ApiError::invalid(e.to_string()))?
        } else {
            JsLoadOptions::default()
        };
        let choice = match opts.backend.as_deref() {
            None => BackendChoice::Auto,
            Some(name) => BackendChoice::parse(name).ok_or_else(|| {
                ApiError::invalid(format!("backend {name:?} is not one of auto, gpu, cpu"))
            })?,
        };
        if opts
            .chunk_size
            .is_some_and(|c| !(MIN_CHUNK..=MAX_CHUNK).contains(&c))
        {
            return Err(ApiError::invalid(format!(
                "chunkSize must be between {MIN_CHUNK} and {MAX_CHUNK} bytes"
            )));
        }
        let on_progress = get(&options, "onProgress").dyn_into::<Function>().ok();
        let signal = get(&options, "signal")
            .dyn_into::<web_sys::AbortSignal>()
            .ok();
        let progress = |phase: &str, loaded: u64, total: u64| {
            if let Some(f) = &on_progress {
                let ev = Object::new();
                let _ = Reflect::set(&ev, &"phase".into(), &phase.into());
                let _ = Reflect::set(&ev, &"loaded".into(), &(loaded as f64).into());
                let _ = Reflect::set(&ev, &"total".into(), &(total as f64).into());
                let _ = f.call1(&JsValue::NULL, &ev);
            }
        };
        let load = LoadOptions {
            backend: choice,
            gpu: GpuOptions {
                context: opts.context_length.unwrap_or(DEFAULT_CONTEXT),
                ..GpuOptions::default()
            },
        };
        let key = match get(&options, "decryptionKey") {
            k if k.is_undefined() || k.is_null() => None,
            k => Some(Rc::new(WebCryptoKey::from_js(&k).await?)),
        };
        let (file, text, backend, mut facts) = if let Some(url) = source.as_string() {
            let url = absolute_url(&url);
            let src = IdbSource {
                db: ModelDb::open().await?,
                url: url.clone(),
                options: fetch::Options {
                    chunk_size: opts.chunk_size.unwrap_or(download::DEFAULT_CHUNK_SIZE),
                    sha256: opts.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                    retries: opts.retries.unwrap_or(4),
                    hub_mirrors: opts.hub_mirrors.clone(),
                    signal: signal.clone(),
                    on_progress: &progress,
                },
                record: RefCell::new(None),
                key,
            };
            // The tokenizer is built while the first weight chunks are read.
            let mut text = None;
            let (file, backend) = load_healing(
                &src,
                load,
                &mut |file| {
                    text = Some(ModelText::with_template(
                        file,
                        opts.chat_template.as_deref(),
                    )?);
                    Ok(())
                },
                &mut |p, done, total| progress(p, done, total),
            )
            .await?;
            let text = text.ok_or_else(|| ApiError::internal("the model header was never read"))?;
            let record = src.record.take().unwrap_or_default();
            let facts = Facts {
                id: file_name(&url),
                source: url,
                size: record.size,
                architecture: String::new(),
                context_length: 0,
                sha256: record.sha256,
                verified: record.verified,
            };
            (file, text, backend, facts)
        } else if key.is_some() {
            return Err(ApiError::invalid(
                "decryptionKey opens sealed files loaded by URL, not Files or Blobs",
            ));
        } else if let Ok(blob) = source.clone().dyn_into::<web_sys::Blob>() {
            let name = get(&source, "name")
                .as_string()
                .unwrap_or_else(|| "model.gguf".into());
            let store = BlobChunks::new(blob);
            let size = store.len();
            let file = GgufFile::read(&store).await?;
            let text = ModelText::with_template(&file, opts.chat_template.as_deref())?;
            let backend = load_backend(&file, store, load, &mut |p, done, total| {
                progress(p, done, total)
            })
            .await?;
            let facts = Facts {
                id: name.clone(),
                source: name,
                size,
                architecture: String::new(),
                context_length: 0,
                sha256: None,
                verified: false,
            };
            (file, text, backend, facts)
        } else {
            return Err(ApiError::invalid(
                "source must be a URL string, a File or a Blob",
            ));
        };
        if signal.as_ref().is_some_and(|s| s.aborted()) {
            return Err(DownloadError::Aborted.into());
        }
        if let Some(id) = opts.model_id {
            facts.id = id;
        }
        let model = LocalModel::with_text(facts.id.clone(), text, backend);
        facts.architecture = file.get_str("general.architecture").unwrap_or("").into();
        facts.context_length = model.context_length();
        Ok(EngineCore {
            shared: SharedModel::new(model),
            facts,
        })
    }
}

/// One answer. `start` waits until the answers started before it are over (one KV cache), then
/// checks the request and runs its prompt.
#[wasm_bindgen]
pub struct CompletionCore {
    shared: Rc<SharedModel>,
    request: RefCell<Option<ChatCompletionRequest>>,
    turn: Rc<RefCell<Option<Rc<Turn>>>>,
    /// Set by `abort` at any time; the answer ends at its next step.
    aborted: Rc<Cell<bool>>,
    /// `stepText` has sent the stream's `[DONE]`.
    ended: Rc<Cell<bool>>,
}

/// A chat-completion id as OpenAI's look.
fn completion_id() -> String {
    format!(
        "chatcmpl-{:012x}",
        (js_sys::Math::random() * 2f64.powi(48)) as u64
    )
}

#[wasm_bindgen]
impl CompletionCore {
    /// Waits for the model's turn, then checks the request and runs its prompt.
    pub fn start(&self) -> Promise {
        let shared = self.shared.clone();
        let request = self.request.borrow_mut().take();
        let (slot, aborted) = (self.turn.clone(), self.aborted.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let request = request.ok_or_else(|| ApiError::invalid("this answer has started"))?;
            let turn = Rc::new(shared.turn().await);
            if aborted.get() {
                return Err(ApiError::from(DownloadError::Aborted).into());
            }
            let created = (js_sys::Date::now() / 1000.0) as u64;
            turn.start(request, completion_id(), created).await?;
            *slot.borrow_mut() = Some(turn);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Advances the answer by one token: resolves to an array of chunk objects (maybe empty),
    /// or null once it is over.
    pub fn step(&self) -> Promise {
        let step = self.next();
        wasm_bindgen_futures::future_to_promise(async move {
            match step.await? {
                Some(chunks) => to_js(&chunks),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Advances the answer by one token without building chunk objects (for answers that are
    /// not streamed); resolves to false once it is over.
    pub fn advance(&self) -> Promise {
        let step = self.next();
        wasm_bindgen_futures::future_to_promise(async move { Ok(step.await?.is_some().into()) })
    }

    /// Advances the answer by one token: resolves to the step's chunks as server-sent events
    /// (`data: {…}\n\n` each, maybe none), `data: [DONE]\n\n` once it is over, then null.
    #[wasm_bindgen(js_name = stepText)]
    pub fn step_text(&self) -> Promise {
        let step = self.next();
        let ended = self.ended.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            if ended.get() {
                return Ok(JsValue::NULL);
            }
            Ok(match step.await? {
                Some(chunks) => sse_text(&chunks)?.into(),
                None => {
                    ended.set(true);
                    sse::DONE.into()
                }
            })
        })
    }

    /// Stops generating; the next step ends the answer.
    pub fn abort(&self) {
        self.aborted.set(true);
        if let Some(turn) = self.turn.borrow().as_ref() {
            turn.abort();
        }
    }

    pub fn finished(&self) -> bool {
        self.turn.borrow().as_ref().is_some_and(|t| t.is_finished())
    }

    /// The whole answer (`chat.completion` object) once finished, else null.
    pub fn response(&self) -> Result<JsValue, JsValue> {
        match self.turn.borrow().as_ref().and_then(|t| t.response()) {
            Some(r) => to_js(&r),
            None => Ok(JsValue::NULL),
        }
    }

    /// Token ids generated so far.
    pub fn tokens(&self) -> Vec<u32> {
        self.turn
            .borrow()
            .as_ref()
            .and_then(|t| t.model().map(|m| m.tokens().to_vec()))
            .unwrap_or_default()
    }
}

impl CompletionCore {
    /// The next step, once started.
    fn next(
        &self,
    ) -> impl std::future::Future<Output = Result<Option<Vec<ChatCompletionChunk>>, ApiError>> {
        let turn = self.turn.borrow().clone();
        let aborted = self.aborted.get();
        async move {
            let turn =
                turn.ok_or_else(|| ApiError::invalid("start the answer before stepping it"))?;
            if aborted {
                turn.abort();
            }
            turn.step().await
        }
    }
}

fn sse_text(chunks: &[ChatCompletionChunk]) -> Result<String, ApiError> {
    let mut text = String::new();
    for chunk in chunks {
        let json = serde_json::to_string(chunk).map_err(|e| ApiError::internal(e.to_string()))?;
        text.push_str(&sse::encode(&json));
    }
    Ok(text)
}
