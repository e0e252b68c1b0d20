//! One forward step as a fixed list of dispatches, built once per loaded model: every buffer
//! (activations sized for the largest slice, attention scratch) is allocated here, so a step
//! only writes its token ids and position and records the list. A layer is five dispatches
//! (six where attention spans several chunks): Q·K·V with the norm before it and the bias
//! after, attention (q/k norm, RoPE and the cache write in its prologue), the output
//! projection adding the residual, gate·up with the norm before and silu(gate) × up after, and
//! down adding the residual.

use bytemuck::Zeroable;

use super::kernels::attention::{self, Attention, AttentionParams, Shape};
use super::kernels::matmul::{self, Input, Output, Product};
use super::kernels::sample::{PickParams, Sample, MAX_SEEN};
use super::kernels::{
    embed, f32_bytes, storage, storage_init, uniform, Groups, Kernel, Op, Pool, Step,
};
use super::weights::GpuMatrix;
use super::{Gpu, LayerCache};
use crate::engine::schema::Weights;
use crate::gguf::ModelConfig;

/// Buffers the host writes or reads each step.
pub struct Io {
    pub step: wgpu::Buffer,
    pub ids: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub sample: wgpu::Buffer,
    pub seen: wgpu::Buffer,
    pub picked: wgpu::Buffer,
    pub staging: wgpu::Buffer,
}

pub struct ForwardPass {
    pub io: Io,
    /// Embedding and every layer: `seq` rows.
    pub body: Vec<Op>,
    /// Final norm and output projection of the step's last row.
    pub head: Vec<Op>,
    pub penalize: Op,
    pub argmax: Op,
    pub top_k: Op,
    /// Dispatches one layer records for a step within one attention chunk.
    pub per_layer: usize,
    /// Tokens one step may hold.
    pub slice: usize,
    /// Positions the KV cache holds.
    pub capacity: usize,
    /// Bytes of GPU memory the pass allocated besides the weights and the KV cache.
    pub bytes: u64,
    /// Bytes of every weight matrix the pass reads.
    pub weight_bytes: u64,
    /// Weight bytes one decode step reads: every layer matrix and the output projection.
    pub decode_bytes: u64,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    pool: &'a Pool,
    bytes: u64,
}

impl Builder<'_> {
    fn buffer(&mut self, values: usize, label: &str) -> wgpu::Buffer {
        self.bytes += (values * 4) as u64;
        storage(&self.gpu.device, (values * 4) as u64, label)
    }

    /// `vectors` end to end in one buffer, copied on the GPU.
    fn concat(&mut self, vectors: &[&wgpu::Buffer], label: &str) -> wgpu::Buffer {
        let total: u64 = vectors.iter().map(|v| v.size()).sum();
        self.bytes += total;
        let out = storage(&self.gpu.device, total, label);
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let mut at = 0;
        for v in vectors {
            enc.copy_buffer_to_buffer(v, 0, &out, at, v.size());
            at += v.size();
        }
        self.gpu.queue.submit([enc.finish()]);
        out
    }

    fn product(&self, ops: &mut Vec<Op>, p: Product) {
        ops.extend(matmul::dispatches(self.pool, self.gpu.caps, &p));
    }
}

impl ForwardPass {
    pub fn build(
        gpu: &Gpu,
        pool: &Pool,
        c: &ModelConfig,
        w: Weights<GpuMatrix, wgpu::Buffer>,
        caches: &[LayerCache],
        slice: usize,
        capacity: usize,
    ) -> Self {
        let (e, hd, f, v) = (c.n_embd, c.head_dim, c.n_ff, c.vocab_size);
        let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
        let eps = c.rms_eps as f32;
        let step = uniform(&gpu.device, &Step { seq: 0, start: 0 });
        let mut b = Builder {
            gpu,
            pool,
            bytes: 0,
        };
        let ids = b.buffer(slice, "ids");
        let x = b.buffer(slice * e, "x");
        let qkv = b.buffer(slice * (qd + 2 * kvd), "qkv");
        let att = b.buffer(slice * qd, "att");
        let ffn = b.buffer(slice * f, "ffn");
        // Gate and up apart, for layers where they cannot be one matrix.
        let mut up: Option<wgpu::Buffer> = None;
        let parts = b.buffer(
            attention::scratch_bytes(c.n_head, hd, slice, capacity) as usize / 4,
            "attention chunks",
        );
        let logits = b.buffer(v, "logits");
        let table = attention::rope_table(hd, c.rope_theta, w.rope_factors.as_deref(), capacity);
        b.bytes += (table.len() * 4) as u64;
        let table = storage_init(&gpu.device, &f32_bytes(&table), "rope table");
        let shape = Shape {
            heads: c.n_head,
            kv_heads: c.n_head_kv,
            head_dim: hd,
            capacity,
            neox: !c.arch.interleaved_rope(),
            qk_norm: c.qk_norm.then_some(c.rms_eps),
        };
        let att_params = uniform(&gpu.device, &AttentionParams::new(shape));
        let no_norms = b.buffer(1, "no q/k norm");

        let mut body = embed::dispatches(pool, gpu.caps, &w.embed, [&ids, &x, &step]);
        let embed_ops = body.len();
        let (mut weight_bytes, mut layer_bytes) = (0u64, 0u64);
        for (l, cache) in w.layers.into_iter().zip(caches) {
            let norm = |weight| Input::Norm { weight, eps };
            let bias = l
                .bias
                .as_ref()
                .map(|[bq, bk, bv]| b.concat(&[bq, bk, bv], "qkv bias"));
            let into_qkv = |col0| Output::Rows {
                col0,
                stride: qd + 2 * kvd,
                accumulate: false,
                bias: bias.as_ref(),
            };
            let mut bytes = 0;
            match GpuMatrix::fuse(gpu, &[&l.wq, &l.wk, &l.wv]) {
                Some(m) => {
                    let p = Product::new(&m, [&x, &qkv, &step], norm(&l.attn_norm), into_qkv(0));
                    b.product(&mut body, p);
                    bytes += m.bytes();
                }
                None => {
                    for (m, col0) in [(&l.wq, 0), (&l.wk, qd), (&l.wv, qd + kvd)] {
                        let p =
                            Product::new(m, [&x, &qkv, &step], norm(&l.attn_norm), into_qkv(col0));
                        b.product(&mut body, p);
                    }
                    bytes += l.wq.bytes() + l.wk.bytes() + l.wv.bytes();
                }
            }
            let norms = l
                .qk_norm
                .as_ref()
                .map(|[nq, nk]| b.concat(&[nq, nk], "q/k norms"));
            let buffers = [
                &qkv,
                &cache.k,
                &cache.v,
                &table,
                norms.as_ref().unwrap_or(&no_norms),
                &parts,
                &att,
                &att_params,
                &step,
            ];
            for kernel in [Attention::Chunks, Attention::Combine] {
                let groups = kernel.groups(c.n_head as u32);
                body.push(Op::new(pool, &kernel, &buffers, groups));
            }
            b.product(
                &mut body,
                Product::new(&l.wo, [&att, &x, &step], Input::Plain, Output::ADD),
            );
            match GpuMatrix::fuse(gpu, &[&l.gate, &l.up]) {
                Some(m) => {
                    let p = Product::new(&m, [&x, &ffn, &step], norm(&l.ffn_norm), Output::Pairs);
                    b.product(&mut body, p);
                    let p = Product::new(&l.down, [&ffn, &x, &step], Input::Plain, Output::ADD);
                    b.product(&mut body, p);
                    bytes += m.bytes();
                }
                None => {
                    let up = up
                        .get_or_insert_with(|| storage(&gpu.device, (slice * f * 4) as u64, "up"));
                    for (m, y) in [(&l.gate, &ffn), (&l.up, &*up)] {
                        let p = Product::new(m, [&x, y, &step], norm(&l.ffn_norm), Output::STORE);
                        b.product(&mut body, p);
                    }
                    let p =
                        Product::new(&l.down, [&ffn, &x, &step], Input::Gated { up }, Output::ADD);
                    b.product(&mut body, p);
                    bytes += l.gate.bytes() + l.up.bytes();
                }
            }
            // The bind groups hold what they use; the rest (fused sources) goes here.
            bytes += l.wo.bytes() + l.down.bytes();
            (weight_bytes, layer_bytes) = (weight_bytes + bytes, layer_bytes + bytes);
        }
        if up.is_some() {
            b.bytes += (slice * f * 4) as u64;
        }
        let per_layer = (body.len() - embed_ops) / c.n_layer.max(1) - 1;
        let output = w.output.as_ref().unwrap_or(&w.embed);
        let mut head = Vec::new();
        b.product(
            &mut head,
            Product {
                w: output,
                x: &x,
                y: &logits,
                step: &step,
                input: Input::Norm {
                    weight: &w.output_norm,
                    eps,
                },
                output: Output::STORE,
                fixed: 1,
                last: true,
            },
        );
        weight_bytes += w.embed.bytes() + w.output.as_ref().map_or(0, GpuMatrix::bytes);
        let decode_bytes = layer_bytes + output.bytes();

        let sample = uniform(&gpu.device, &PickParams::zeroed());
        let seen = b.buffer(MAX_SEEN * 2, "seen");
        let picked = b.buffer(1, "picked");
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (v * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let sampling = [&logits, &seen, &picked, &sample];
        let one = |k: &dyn Kernel, g: [u32; 3]| Op::new(pool, k, &sampling, Groups::Fixed(g));
        let (penalize, argmax, top_k) = (
            one(&Sample::Penalize, [(MAX_SEEN as u32).div_ceil(64), 1, 1]),
            one(&Sample::Argmax, [1, 1, 1]),
            one(&Sample::TopK, [1, 1, 1]),
        );
        let bytes = b.bytes;
        ForwardPass {
            io: Io {
                step,
                ids,
                logits,
                sample,
                seen,
                picked,
                staging,
            },
            body,
            head,
            penalize,
            argmax,
            top_k,
            per_layer,
            slice,
            capacity,
            bytes,
            weight_bytes,
            decode_bytes,
        }
    }
}
