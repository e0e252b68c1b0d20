//! Getting a model onto a backend: the app's choice (auto, gpu, cpu), auto taking the CPU when the
//! GPU cannot take the model (and carrying on there if the GPU fails later, see `fallback`), and
//! a load that heals its model file when a chunk fails its check on the way in.

use super::cpu::CpuBackend;
use super::fallback::Fallback;
use super::gpu::{GpuBackend, GpuOptions};
use super::{Backend, EngineError};
use crate::gguf::{GgufError, GgufFile};
use crate::store::ChunkStore;

/// Which backend the app asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The GPU when it can take the model, else the CPU; and the CPU if the GPU fails later.
    #[default]
    Auto,
    /// The GPU or an error.
    Gpu,
    Cpu,
}

impl BackendChoice {
    /// `auto`, `gpu` or `cpu`, as the JavaScript option spells it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            "gpu" => Some(Self::Gpu),
            "cpu" => Some(Self::Cpu),
            _ => None,
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub backend: BackendChoice,
    /// The GPU's settings; its `context` (the positions the KV cache may hold, never above the
    /// model's own) bounds the CPU's cache too.
    pub gpu: GpuOptions,
}

/// Loads `file`'s weights from `store` onto the backend `options` asks for.
/// `on_progress(phase, done, total)`: "load" (tensor bytes) and, on the GPU, "compile".
pub async fn load_backend<S: ChunkStore + 'static>(
    file: &GgufFile,
    store: S,
    options: LoadOptions,
    on_progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<Box<dyn Backend>, EngineError> {
    let context = options.gpu.context;
    if options.backend == BackendChoice::Cpu {
        return Ok(Box::new(cpu(file, &store, context, on_progress).await?));
    }
    match GpuBackend::load(file, &store, options.gpu, on_progress).await {
        Ok(gpu) if options.backend == BackendChoice::Auto => Ok(Box::new(Fallback::on_gpu(
            gpu,
            file.clone(),
            store,
            context,
        ))),
        Ok(gpu) => Ok(Box::new(gpu)),
        Err(EngineError::Gpu(why)) if options.backend == BackendChoice::Auto => {
            let backend = cpu(file, &store, context, on_progress).await?;
            Ok(Box::new(Fallback::<S>::on_cpu(backend, why.to_string())))
        }
        Err(e) => Err(e),
    }
}

async fn cpu<S: ChunkStore>(
    file: &GgufFile,
    store: &S,
    context: usize,
    on_progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<CpuBackend, EngineError> {
    let mut backend = CpuBackend::load(file, store, &mut |done, total| {
        on_progress("load", done, total)
    })
    .await?;
    backend.limit_context(context);
    Ok(backend)
}

/// A model file whose damaged or missing chunks can be fetched again: IndexedDB and the network
/// in the browser.
#[allow(async_fn_in_trait)]
pub trait ChunkSource {
    type Store: ChunkStore + 'static;
    type Error: From<EngineError>;
    /// The file, every chunk of it stored (what is missing is fetched first).
    async fn open(&self) -> Result<Self::Store, Self::Error>;
    /// Drops chunk `index`, so the next `open` fetches it again.
    async fn forget(&self, index: u64) -> Result<(), Self::Error>;
}

/// Rounds of fetch-and-load before a chunk that keeps failing its check is given up on.
const HEALING_ROUNDS: usize = 3;

/// Opens `source` and loads its model onto a backend; a chunk found damaged or gone while
/// loading is fetched again and the load retried. `on_header` sees the parsed header before any
/// weight is read (while the store reads ahead), and may refuse the file.
pub async fn load_healing<Src: ChunkSource>(
    source: &Src,
    options: LoadOptions,
    on_header: &mut dyn FnMut(&GgufFile) -> Result<(), EngineError>,
    on_progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<(GgufFile, Box<dyn Backend>), Src::Error> {
    let mut last = 0;
    for _ in 0..HEALING_ROUNDS {
        let store = source.open().await?;
        let loaded = match GgufFile::read(&store).await {
            Ok(file) => match on_header(&file) {
                Ok(()) => load_backend(&file, store, options, on_progress)
                    .await
                    .map(|backend| (file, backend)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        match loaded {
            Ok(done) => return Ok(done),
            Err(e) => match e.bad_chunk() {
                Some(index) => {
                    source.forget(index).await?;
                    last = index;
                }
                None => return Err(e.into()),
            },
        }
    }
    Err(EngineError::ChunkKeepsFailing { index: last }.into())
}

impl EngineError {
    /// The model chunk whose failed check caused this, if one did.
    pub fn bad_chunk(&self) -> Option<u64> {
        match self {
            EngineError::Gguf(GgufError::Store(e)) => e.bad_chunk(),
            _ => None,
        }
    }
}
