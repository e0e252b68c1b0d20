//! wasm-bindgen exports, and nothing that tests need besides them: `EngineCore` (load a model
//! from a URL through IndexedDB, or from a `Blob`; answer chat-completions requests one step at a
//! time) and the cache listing. `www/lib/` wraps these in the OpenAI-shaped JavaScript API.

mod answers;
mod conversations;
mod error;
mod idb;
mod probe;
mod route;

use js_sys::{Function, Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub use error::WebError;
pub use probe::{assess_device, probe_device};
pub use route::RouterCore;

use crate::download::{self, fetch};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::engine::cpu::CpuBackend;
use crate::engine::gpu::{Gpu, GpuBackend, GpuOptions};
use crate::engine::{Backend, EngineError};
use crate::gguf::{GgufError, GgufFile};
use crate::openai::{
    AnswerError, ChatCompletionChunk, ChatCompletionRequest, Completion, LocalModel,
};
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
    adapter: Option<String>,
    shader_f16: bool,
    fallback_reason: Option<String>,
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
        EngineError::Gguf(GgufError::Store(
            StoreError::CorruptChunk { index } | StoreError::MissingChunk { index },
        )) => Some(*index),
        _ => None,
    }
}

/// Which backend `load` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Auto,
    Gpu,
    Cpu,
}

/// Where the weights come from, kept so `auto` can reload them for the CPU if the GPU fails.
enum Source {
    Idb(IdbChunks),
    Blob(BlobChunks),
}

async fn cpu_backend<S: AsyncChunkStore>(
    file: &GgufFile,
    store: &S,
    context: usize,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<Box<dyn Backend>, EngineError> {
    let mut b = CpuBackend::load_from(file, store, &mut |done, total| {
        progress("load", done, total)
    })
    .await?;
    b.limit_context(context);
    Ok(Box::new(b))
}

/// The backend for `choice`; `auto` takes the GPU when it loads and the CPU otherwise, saying why.
async fn backend<S: AsyncChunkStore>(
    file: &GgufFile,
    store: &S,
    choice: Choice,
    context: usize,
    progress: &dyn Fn(&str, u64, u64),
) -> Result<(Box<dyn Backend>, Option<Gpu>, Option<String>), EngineError> {
    if choice == Choice::Cpu {
        return Ok((
            cpu_backend(file, store, context, progress).await?,
            None,
            None,
        ));
    }
    let options = GpuOptions {
        context,
        ..GpuOptions::default()
    };
    match GpuBackend::load_from(file, store, options, &mut |phase, done, total| {
        progress(phase, done, total)
    })
    .await
    {
        Ok(b) => {
            let gpu = b.gpu().clone();
            Ok((Box::new(b), Some(gpu), None))
        }
        Err(EngineError::Gpu(e)) if choice == Choice::Auto => Ok((
            cpu_backend(file, store, context, progress).await?,
            None,
            Some(e.to_string()),
        )),
        Err(e) => Err(e),
    }
}

struct State {
    model: LocalModel,
    info: ModelInfo,
    file: GgufFile,
    source: Source,
    choice: Choice,
    context: usize,
    gpu: Option<Gpu>,
}

impl State {
    /// After a GPU failure under `auto`: the same weights on the CPU, so the request finishes.
    async fn fall_back(&mut self, why: &EngineError) -> Result<bool, EngineError> {
        if self.choice != Choice::Auto || self.gpu.is_none() || !why.is_gpu_failure() {
            return Ok(false);
        }
        let quiet = |_: &str, _: u64, _: u64| {};
        let cpu = match &self.source {
            Source::Idb(s) => cpu_backend(&self.file, s, self.context, &quiet).await?,
            Source::Blob(s) => cpu_backend(&self.file, s, self.context, &quiet).await?,
        };
        self.model.replace_backend(cpu);
        self.gpu = None;
        self.info.backend = "cpu";
        self.info.fallback_reason = Some(why.to_string());
        Ok(true)
    }

    async fn start(
        &mut self,
        req: ChatCompletionRequest,
        id: String,
        created: u64,
    ) -> Result<Completion, WebError> {
        loop {
            match self
                .model
                .start_async(req.clone(), id.clone(), created)
                .await
            {
                Err(AnswerError::Engine(e)) if self.fall_back(&e).await? => continue,
                r => return Ok(r?),
            }
        }
    }

    async fn step(
        &mut self,
        c: &mut Completion,
    ) -> Result<Option<Vec<ChatCompletionChunk>>, WebError> {
        loop {
            match self.model.step_async(c).await {
                Err(e) if self.fall_back(&e).await? => continue,
                r => return Ok(r?),
            }
        }
    }
}

fn busy() -> WebError {
    WebError::new(
        "busy",
        "the engine is answering another request; requests run one at a time",
    )
}

/// A model loaded in this thread, answering chat-completions requests step by step.
#[wasm_bindgen]
pub struct EngineCore {
    state: Rc<RefCell<State>>,
}

#[wasm_bindgen]
impl EngineCore {
    /// Loads a GGUF model from a URL (downloaded into IndexedDB once, resumably) or a Blob/File.
    pub async fn load(source: JsValue, options: JsValue) -> Result<EngineCore, JsValue> {
        Self::load_inner(source, options)
            .await
            .map_err(JsValue::from)
    }

    async fn load_inner(source: JsValue, options: JsValue) -> Result<EngineCore, WebError> {
        let opts: LoadOptions = if options.is_object() {
            serde_wasm_bindgen::from_value(options.clone())
                .map_err(|e| WebError::new("invalid_request", e.to_string()))?
        } else {
            LoadOptions::default()
        };
        let choice = match opts.backend.as_deref() {
            None | Some("auto") => Choice::Auto,
            Some("gpu") => Choice::Gpu,
            Some("cpu") => Choice::Cpu,
            Some(other) => {
                return Err(WebError::new(
                    "invalid_request",
                    format!("backend {other:?} is not one of auto, gpu, cpu"),
                ))
            }
        };
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
        if opts
            .chunk_size
            .is_some_and(|c| !(MIN_CHUNK..=MAX_CHUNK).contains(&c))
        {
            return Err(WebError::new(
                "invalid_request",
                format!("chunkSize must be between {MIN_CHUNK} and {MAX_CHUNK} bytes"),
            ));
        }
        let context = opts.context_length.unwrap_or(DEFAULT_CONTEXT);
        let aborted = || signal.as_ref().is_some_and(|s| s.aborted());

        let (source, id, name, size, sha256, verified) = if let Some(url) = source.as_string() {
            let url = absolute_url(&url);
            let id = opts
                .model_id
                .clone()
                .unwrap_or_else(|| url.rsplit('/').next().unwrap_or(&url).to_string());
            let db = Db::open().await?;
            let dl = fetch::Options {
                chunk_size: opts.chunk_size.unwrap_or(download::DEFAULT_CHUNK_SIZE),
                sha256: opts.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                retries: opts.retries.unwrap_or(4),
                signal: signal.clone(),
                on_progress: &progress,
            };
            // A chunk that fails its check while loading is fetched again, then the load retried.
            let mut loaded = None;
            for _ in 0..3 {
                let record = fetch::ensure(&db, &url, &dl).await?;
                let store = IdbChunks::new(db.clone(), record.clone());
                let opened = async {
                    let file = GgufFile::read_from(&store).await?;
                    let b = backend(&file, &store, choice, context, &progress).await?;
                    Ok::<_, EngineError>((file, b))
                };
                match opened.await {
                    Ok(done) => {
                        loaded = Some((done, record, store));
                        break;
                    }
                    Err(e) => match bad_chunk(&e) {
                        Some(index) => fetch::forget_chunk(&db, &url, index).await?,
                        None => return Err(e.into()),
                    },
                }
            }
            let Some(((file, b), record, store)) = loaded else {
                return Err(WebError::new(
                    "integrity",
                    "model chunks keep failing their checks after being fetched again",
                ));
            };
            (
                (file, b, Source::Idb(store)),
                id,
                url,
                record.size,
                record.sha256.clone(),
                record.verified,
            )
        } else if let Ok(blob) = source.clone().dyn_into::<web_sys::Blob>() {
            let name = get(&source, "name")
                .as_string()
                .unwrap_or_else(|| "model.gguf".into());
            let id = opts.model_id.clone().unwrap_or_else(|| name.clone());
            let store = BlobChunks::new(blob);
            let file = GgufFile::read_from(&store).await?;
            let b = backend(&file, &store, choice, context, &progress).await?;
            let size = store.len();
            ((file, b, Source::Blob(store)), id, name, size, None, false)
        } else {
            return Err(WebError::new(
                "invalid_request",
                "source must be a URL string, a File or a Blob",
            ));
        };
        if aborted() {
            return Err(download::DownloadError::Aborted.into());
        }
        let (file, (b, gpu, fallback_reason), source) = source;
        let model = LocalModel::new(id.clone(), &file, b)?;
        let info = ModelInfo {
            id,
            source: name,
            size,
            architecture: file.get_str("general.architecture").unwrap_or("").into(),
            context_length: model.context_length(),
            backend: if gpu.is_some() { "gpu" } else { "cpu" },
            adapter: gpu.as_ref().map(|g| g.adapter.clone()),
            shader_f16: gpu.as_ref().is_some_and(|g| g.caps.f16),
            fallback_reason,
            sha256,
            verified,
        };
        let state = State {
            model,
            info,
            file,
            source,
            choice,
            context,
            gpu,
        };
        Ok(EngineCore {
            state: Rc::new(RefCell::new(state)),
        })
    }

    /// The loaded model: id, source, size, architecture, context length, backend (and GPU adapter,
    /// or why `auto` chose the CPU).
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.state.try_borrow().map_err(|_| busy())?.info)
    }

    /// Checks a chat-completions request body and runs its prompt; resolves to a completion to
    /// step with `step`.
    pub fn start(&self, body: JsValue) -> js_sys::Promise {
        let run = start_on(self.state.clone(), body);
        wasm_bindgen_futures::future_to_promise(async move { Ok(run.await?.into()) })
    }

    /// How many tokens the prompt of a request body would take, without running the model.
    #[wasm_bindgen(js_name = countTokens)]
    pub fn count_tokens(&self, body: JsValue) -> Result<usize, JsValue> {
        let req: ChatCompletionRequest = serde_wasm_bindgen::from_value(body)
            .map_err(|e| WebError::new("invalid_request", e.to_string()))?;
        let st = self.state.try_borrow().map_err(|_| busy())?;
        Ok(st.model.plan(&req).map_err(WebError::from)?.0.prompt.len())
    }

    /// Advances `completion` by one token without building chunk objects (for answers that are
    /// not streamed); resolves to false once it is over.
    pub fn advance(&self, completion: &CompletionCore) -> js_sys::Promise {
        let step = step_on(self.state.clone(), completion);
        wasm_bindgen_futures::future_to_promise(async move { Ok(step.await?.is_some().into()) })
    }

    /// Advances `completion` by one token: resolves to an array of chunk objects (maybe empty),
    /// or null once it is over.
    pub fn step(&self, completion: &CompletionCore) -> js_sys::Promise {
        let step = step_on(self.state.clone(), completion);
        wasm_bindgen_futures::future_to_promise(async move { chunks_to_js(step.await?) })
    }

    /// Destroys the GPU device as a driver reset would, so an app can test its fallback;
    /// false when the engine is not on the GPU.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) -> bool {
        match self.state.try_borrow().ok().and_then(|s| s.gpu.clone()) {
            Some(g) => {
                g.lose();
                true
            }
            None => false,
        }
    }
}

/// For Rust callers (the browser tests): `start` and `step` as futures.
impl EngineCore {
    pub async fn start_async(&self, body: JsValue) -> Result<CompletionCore, JsValue> {
        Ok(start_on(self.state.clone(), body).await?)
    }

    pub async fn step_async(&self, completion: &CompletionCore) -> Result<JsValue, JsValue> {
        chunks_to_js(step_on(self.state.clone(), completion).await?)
    }
}

fn chunks_to_js(step: Option<Vec<ChatCompletionChunk>>) -> Result<JsValue, JsValue> {
    match step {
        Some(chunks) => to_js(&chunks),
        None => Ok(JsValue::NULL),
    }
}

// The state stays borrowed across the GPU readback on purpose: every other entry point takes it
// with try_borrow and answers `busy`, so overlapping calls get an error, never a panic.
#[allow(clippy::await_holding_refcell_ref)]
async fn start_on(state: Rc<RefCell<State>>, body: JsValue) -> Result<CompletionCore, WebError> {
    let req: ChatCompletionRequest = serde_wasm_bindgen::from_value(body)
        .map_err(|e| WebError::new("invalid_request", e.to_string()))?;
    let id = format!(
        "chatcmpl-{:012x}",
        (js_sys::Math::random() * 2f64.powi(48)) as u64
    );
    let created = (js_sys::Date::now() / 1000.0) as u64;
    let mut st = state.try_borrow_mut().map_err(|_| busy())?;
    let inner = st.start(req, id, created).await?;
    Ok(CompletionCore {
        inner: Rc::new(RefCell::new(inner)),
        abort: Rc::new(Cell::new(false)),
    })
}

#[allow(clippy::await_holding_refcell_ref)]
fn step_on(
    state: Rc<RefCell<State>>,
    completion: &CompletionCore,
) -> impl std::future::Future<Output = Result<Option<Vec<ChatCompletionChunk>>, WebError>> {
    let (c, abort) = (completion.inner.clone(), completion.abort.clone());
    async move {
        let mut st = state.try_borrow_mut().map_err(|_| busy())?;
        let mut c = c.try_borrow_mut().map_err(|_| busy())?;
        if abort.get() {
            c.abort();
        }
        st.step(&mut c).await
    }
}

/// One answer in progress.
#[wasm_bindgen]
pub struct CompletionCore {
    inner: Rc<RefCell<Completion>>,
    /// Set by `abort` even while a step is running; the next step ends the answer.
    abort: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl CompletionCore {
    /// Stops generating; the next `step` ends the answer.
    pub fn abort(&self) {
        self.abort.set(true);
        if let Ok(mut c) = self.inner.try_borrow_mut() {
            c.abort();
        }
    }

    pub fn finished(&self) -> bool {
        self.inner.try_borrow().is_ok_and(|c| c.is_finished())
    }

    /// The whole answer (`chat.completion` object) once finished, else null.
    pub fn response(&self) -> Result<JsValue, JsValue> {
        match self.inner.try_borrow().map_err(|_| busy())?.response() {
            Some(r) => to_js(&r),
            None => Ok(JsValue::NULL),
        }
    }

    /// Token ids generated so far.
    pub fn tokens(&self) -> Vec<u32> {
        self.inner
            .try_borrow()
            .map_or_else(|_| Vec::new(), |c| c.tokens().to_vec())
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
