//! The tensors a model is made of, by name and shape, as its config implies them: one list that
//! both backends' loaders read, so the CPU and the GPU never disagree on what a layer holds.

use super::dense::widen;
use super::EngineError;
use crate::gguf::{GgufError, GgufFile, ModelConfig, TensorInfo};
use crate::store::ChunkStore;

/// One transformer layer's weights: `M` for matrices, `V` for vectors.
pub struct Layer<M, V> {
    pub attn_norm: V,
    pub wq: M,
    pub wk: M,
    pub wv: M,
    /// Biases of Q, K and V (Qwen2).
    pub bias: Option<[V; 3]>,
    /// Per-head RMS norms of queries and keys, before RoPE (Qwen3).
    pub qk_norm: Option<[V; 2]>,
    pub wo: M,
    pub ffn_norm: V,
    pub gate: M,
    pub up: M,
    pub down: M,
}

/// Every weight of a model.
pub struct Weights<M, V> {
    pub embed: M,
    /// None when the embedding matrix doubles as the output projection.
    pub output: Option<M>,
    pub output_norm: V,
    pub layers: Vec<Layer<M, V>>,
    /// Per-pair RoPE frequency divisors (Llama 3 `rope_freqs.weight`), if the file has them.
    pub rope_factors: Option<Vec<f32>>,
}

/// How a backend takes one tensor into its own storage. `count(bytes)` reports file bytes read,
/// as often as the backend likes, for the load's progress.
#[allow(async_fn_in_trait)]
pub trait Loader {
    type Matrix;
    type Vector;
    /// `n_out` rows of `n_in` values, encoded as `info` says, at `offset` in `store`.
    async fn matrix<S: ChunkStore>(
        &mut self,
        store: &S,
        info: &TensorInfo,
        offset: u64,
        n_in: usize,
        n_out: usize,
        count: &mut dyn FnMut(u64),
    ) -> Result<Self::Matrix, EngineError>;
    /// `n` values as f32, given already read and widened.
    fn vector(&mut self, values: Vec<f32>) -> Result<Self::Vector, EngineError>;
}

impl<M, V> Weights<M, V> {
    /// Reads every tensor `config` implies from `store` through `loader`, checking each one's
    /// shape against the file; `on_progress(loaded, total)` counts tensor bytes. Tensors are
    /// read in the file's order, not the schema's (files order them by name, or put the
    /// embedding first), so a store that reads chunk by chunk reads each chunk once.
    pub async fn load<S: ChunkStore, L: Loader<Matrix = M, Vector = V>>(
        file: &GgufFile,
        store: &S,
        config: &ModelConfig,
        loader: &mut L,
        on_progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Self, EngineError> {
        let mut plan = Plan {
            file,
            wanted: Vec::new(),
        };
        walk(&mut plan, config).await?;
        let mut wanted = plan.wanted;
        wanted.sort_by_key(|w| w.info.offset);
        let total: u64 = file.tensors().iter().map(|t| t.size).sum();
        let mut loaded = 0u64;
        let mut got = Got {
            items: std::collections::HashMap::with_capacity(wanted.len()),
            loader,
        };
        for w in wanted {
            let offset = file.data_offset + w.info.offset;
            let item = match w.kind {
                Kind::Matrix(n_in, n_out) => {
                    let mut count = |bytes: u64| {
                        loaded += bytes;
                        on_progress(loaded, total);
                    };
                    let m = got
                        .loader
                        .matrix(store, w.info, offset, n_in, n_out, &mut count)
                        .await?;
                    Item::Matrix(m)
                }
                Kind::Floats(n) => {
                    let mut raw = vec![0u8; w.info.size as usize];
                    store
                        .read_at(offset, &mut raw)
                        .await
                        .map_err(GgufError::from)?;
                    let values = widen(w.info.ty, &raw, n)?;
                    loaded += w.info.size;
                    on_progress(loaded, total);
                    Item::Floats(values)
                }
            };
            got.items.insert(w.name, item);
        }
        walk(&mut got, config).await
    }
}

/// The model's tensors in the schema's order, from whichever `Source`: the one place that says
/// what a layer holds.
async fn walk<T: Source>(t: &mut T, c: &ModelConfig) -> Result<Weights<T::M, T::V>, EngineError> {
    let (q_dim, kv_dim) = (c.n_head * c.head_dim, c.n_head_kv * c.head_dim);
    let mut layers = Vec::with_capacity(c.n_layer);
    for i in 0..c.n_layer {
        let n = |s: &str| format!("blk.{i}.{s}");
        let bias = match c.qkv_bias {
            true => Some([
                t.vector(&n("attn_q.bias"), q_dim).await?,
                t.vector(&n("attn_k.bias"), kv_dim).await?,
                t.vector(&n("attn_v.bias"), kv_dim).await?,
            ]),
            false => None,
        };
        let qk_norm = match c.qk_norm {
            true => Some([
                t.vector(&n("attn_q_norm.weight"), c.head_dim).await?,
                t.vector(&n("attn_k_norm.weight"), c.head_dim).await?,
            ]),
            false => None,
        };
        layers.push(Layer {
            attn_norm: t.vector(&n("attn_norm.weight"), c.n_embd).await?,
            wq: t.matrix(&n("attn_q.weight"), c.n_embd, q_dim).await?,
            wk: t.matrix(&n("attn_k.weight"), c.n_embd, kv_dim).await?,
            wv: t.matrix(&n("attn_v.weight"), c.n_embd, kv_dim).await?,
            bias,
            qk_norm,
            wo: t.matrix(&n("attn_output.weight"), q_dim, c.n_embd).await?,
            ffn_norm: t.vector(&n("ffn_norm.weight"), c.n_embd).await?,
            gate: t.matrix(&n("ffn_gate.weight"), c.n_embd, c.n_ff).await?,
            up: t.matrix(&n("ffn_up.weight"), c.n_embd, c.n_ff).await?,
            down: t.matrix(&n("ffn_down.weight"), c.n_ff, c.n_embd).await?,
        });
    }
    let embed = t
        .matrix("token_embd.weight", c.n_embd, c.vocab_size)
        .await?;
    let output = match c.tied_embeddings {
        true => None,
        false => Some(t.matrix("output.weight", c.n_embd, c.vocab_size).await?),
    };
    let rope_factors = match t.has("rope_freqs.weight") {
        true => Some(t.floats("rope_freqs.weight", c.head_dim / 2).await?),
        false => None,
    };
    let output_norm = t.vector("output_norm.weight", c.n_embd).await?;
    Ok(Weights {
        embed,
        output,
        output_norm,
        layers,
        rope_factors,
    })
}

/// Where `walk` takes each tensor from.
#[allow(async_fn_in_trait)]
trait Source {
    type M;
    type V;
    async fn matrix(
        &mut self,
        name: &str,
        n_in: usize,
        n_out: usize,
    ) -> Result<Self::M, EngineError>;
    async fn floats(&mut self, name: &str, n: usize) -> Result<Vec<f32>, EngineError>;
    async fn vector(&mut self, name: &str, n: usize) -> Result<Self::V, EngineError>;
    fn has(&self, name: &str) -> bool;
}

enum Kind {
    Matrix(usize, usize),
    Floats(usize),
}

struct Wanted<'a> {
    name: String,
    info: &'a TensorInfo,
    kind: Kind,
}

/// The first walk: which tensors, of which shapes (checked against the file), nothing read.
struct Plan<'a> {
    file: &'a GgufFile,
    wanted: Vec<Wanted<'a>>,
}

impl Source for Plan<'_> {
    type M = ();
    type V = ();

    async fn matrix(&mut self, name: &str, n_in: usize, n_out: usize) -> Result<(), EngineError> {
        let info = self
            .file
            .shaped_tensor(name, &[n_in as u64, n_out as u64])?;
        self.wanted.push(Wanted {
            name: name.into(),
            info,
            kind: Kind::Matrix(n_in, n_out),
        });
        Ok(())
    }

    async fn floats(&mut self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        let info = self.file.shaped_tensor(name, &[n as u64])?;
        self.wanted.push(Wanted {
            name: name.into(),
            info,
            kind: Kind::Floats(n),
        });
        Ok(Vec::new())
    }

    async fn vector(&mut self, name: &str, n: usize) -> Result<(), EngineError> {
        self.floats(name, n).await.map(drop)
    }

    fn has(&self, name: &str) -> bool {
        self.file.tensor_info(name).is_some()
    }
}

enum Item<M> {
    Matrix(M),
    Floats(Vec<f32>),
}

/// The second walk: the tensors read, taken in the schema's order.
struct Got<'a, L: Loader> {
    items: std::collections::HashMap<String, Item<L::Matrix>>,
    loader: &'a mut L,
}

impl<L: Loader> Got<'_, L> {
    fn take(&mut self, name: &str) -> Result<Item<L::Matrix>, EngineError> {
        // The plan asked for every name the walk takes, once each.
        self.items
            .remove(name)
            .ok_or_else(|| EngineError::Compute(format!("tensor {name} taken twice")))
    }
}

impl<L: Loader> Source for Got<'_, L> {
    type M = L::Matrix;
    type V = L::Vector;

    async fn matrix(&mut self, name: &str, _: usize, _: usize) -> Result<L::Matrix, EngineError> {
        match self.take(name)? {
            Item::Matrix(m) => Ok(m),
            Item::Floats(_) => Err(EngineError::Compute(format!("{name} is not a matrix"))),
        }
    }

    async fn floats(&mut self, name: &str, _: usize) -> Result<Vec<f32>, EngineError> {
        match self.take(name)? {
            Item::Floats(v) => Ok(v),
            Item::Matrix(_) => Err(EngineError::Compute(format!("{name} is not a vector"))),
        }
    }

    async fn vector(&mut self, name: &str, n: usize) -> Result<L::Vector, EngineError> {
        let values = self.floats(name, n).await?;
        self.loader.vector(values)
    }

    fn has(&self, name: &str) -> bool {
        self.items.contains_key(name)
    }
}
