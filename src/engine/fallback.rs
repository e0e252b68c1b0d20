//! `auto` on the GPU: a backend that runs on the GPU and, when the device is lost or runs out of
//! memory, loads the same weights for the CPU and carries on there, its KV cache rebuilt from
//! the tokens the GPU's held. A request in progress finishes; the caller sees no error.

use super::cpu::CpuBackend;
use super::gpu::{Gpu, GpuBackend};
use super::{Backend, EngineError, Pending, Pick, Placement};
use crate::gguf::{GgufFile, ModelConfig};
use crate::store::ChunkStore;

enum Active<S> {
    /// With what it takes to load the CPU backend later.
    Gpu {
        backend: Box<GpuBackend>,
        file: GgufFile,
        store: S,
    },
    Cpu(CpuBackend),
}

pub(super) struct Fallback<S> {
    active: Active<S>,
    /// Positions the CPU backend may hold, as the GPU's did.
    context: usize,
    /// The tokens the KV cache holds.
    held: Vec<u32>,
    /// Why the model runs on the CPU, once it does.
    reason: Option<String>,
}

impl<S: ChunkStore> Fallback<S> {
    pub fn on_gpu(backend: GpuBackend, file: GgufFile, store: S, context: usize) -> Self {
        Self {
            active: Active::Gpu {
                backend: Box::new(backend),
                file,
                store,
            },
            context,
            held: Vec::new(),
            reason: None,
        }
    }

    /// On the CPU from the start: the GPU could not take the model, for `reason`.
    pub fn on_cpu(backend: CpuBackend, reason: String) -> Self {
        Self {
            context: backend.config().context_length,
            active: Active::Cpu(backend),
            held: Vec::new(),
            reason: Some(reason),
        }
    }

    /// The GPU failed with `why`: the CPU takes over, with the cache the GPU held.
    async fn fall_back(&mut self, why: &EngineError) -> Result<(), EngineError> {
        let Active::Gpu { file, store, .. } = &self.active else {
            return Ok(());
        };
        let mut cpu = CpuBackend::load(file, store, &mut |_, _| {}).await?;
        cpu.limit_context(self.context);
        if !self.held.is_empty() {
            cpu.forward(&self.held).await?;
        }
        self.active = Active::Cpu(cpu);
        self.reason = Some(why.to_string());
        Ok(())
    }

    fn active(&mut self) -> &mut dyn Backend {
        match &mut self.active {
            Active::Gpu { backend, .. } => backend.as_mut(),
            Active::Cpu(backend) => backend,
        }
    }
}

impl<S: ChunkStore> Backend for Fallback<S> {
    fn config(&self) -> &ModelConfig {
        match &self.active {
            Active::Gpu { backend, .. } => backend.config(),
            Active::Cpu(backend) => backend.config(),
        }
    }

    fn forward<'a>(&'a mut self, tokens: &'a [u32]) -> Pending<'a, Vec<f32>> {
        Box::pin(async move {
            let logits = match self.active().forward(tokens).await {
                Err(e) if e.is_gpu_failure() => {
                    self.fall_back(&e).await?;
                    self.active().forward(tokens).await?
                }
                other => other?,
            };
            self.held.extend_from_slice(tokens);
            Ok(logits)
        })
    }

    fn forward_pick<'a>(&'a mut self, token: u32, pick: &'a Pick) -> Option<Pending<'a, u32>> {
        match &self.active {
            Active::Gpu { backend, .. } if backend.picks(pick) => {}
            _ => return None,
        }
        Some(Box::pin(async move {
            let picked = match &mut self.active {
                Active::Gpu { backend, .. } => backend.pick_next(token, pick).await,
                Active::Cpu(_) => Err(EngineError::Compute("no GPU to pick on".into())),
            };
            let token_out = match picked {
                Err(e) if e.is_gpu_failure() => {
                    self.fall_back(&e).await?;
                    let mut logits = self.active().forward(&[token]).await?;
                    pick.choose(&mut logits)
                }
                other => other?,
            };
            self.held.push(token);
            Ok(token_out)
        }))
    }

    fn cache_len(&self) -> usize {
        self.held.len()
    }

    fn truncate(&mut self, len: usize) -> Result<(), EngineError> {
        self.held.truncate(len);
        self.active().truncate(len)
    }

    fn placement(&self) -> Placement {
        match &self.active {
            Active::Gpu { backend, .. } => backend.placement(),
            Active::Cpu(backend) => Placement {
                fallback_reason: self.reason.clone(),
                ..backend.placement()
            },
        }
    }

    fn profile(&mut self, on: Option<bool>) -> Option<String> {
        self.active().profile(on)
    }

    fn gpu(&self) -> Option<&Gpu> {
        match &self.active {
            Active::Gpu { backend, .. } => backend.gpu(),
            Active::Cpu(_) => None,
        }
    }
}
