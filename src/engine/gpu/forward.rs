//! One forward step as a fixed list of dispatches, built once per loaded model: every buffer
//! (activations sized for the largest slice, score scratch) is allocated here, so a step only
//! writes its token ids and position and records the list.

use bytemuck::Zeroable;

use super::kernels::attention::{self, Attention, AttentionParams};
use super::kernels::elementwise::{Add, Shape};
use super::kernels::matmul::{self, Operands};
use super::kernels::norm::{NormParams, RmsNorm};
use super::kernels::rope::{self, Rope, RopeParams};
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
    pub x: wgpu::Buffer,
    pub last: wgpu::Buffer,
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
    /// Final norm and output projection of the last row.
    pub head: Vec<Op>,
    pub penalize: Op,
    pub argmax: Op,
    pub top_k: Op,
    /// Dispatches one layer records.
    pub per_layer: usize,
    /// Tokens one step may hold.
    pub slice: usize,
    /// Positions the KV cache holds.
    pub capacity: usize,
    /// Bytes of GPU memory the pass allocated besides the weights and the KV cache.
    pub bytes: u64,
}

struct Builder<'a> {
    gpu: &'a Gpu,
    pool: &'a Pool,
    step: &'a wgpu::Buffer,
    bytes: u64,
}

impl Builder<'_> {
    fn buffer(&mut self, values: usize, label: &str) -> wgpu::Buffer {
        self.bytes += (values * 4) as u64;
        storage(&self.gpu.device, (values * 4) as u64, label)
    }

    /// y = x · Wᵀ (y += with `residual`; x = silu(x) × up with `up`); `fixed` rows (0: the step's).
    fn matmul(
        &self,
        ops: &mut Vec<Op>,
        w: &GpuMatrix,
        [x, y]: [&wgpu::Buffer; 2],
        up: Option<&wgpu::Buffer>,
        residual: bool,
        fixed: u32,
    ) {
        let io = Operands {
            x,
            y,
            step: self.step,
            up,
        };
        ops.extend(matmul::dispatches(
            self.pool,
            self.gpu.caps,
            w,
            &io,
            residual,
            fixed,
        ));
    }

    fn norm(
        &self,
        [src, dst, weight]: [&wgpu::Buffer; 3],
        width: usize,
        per_token: usize,
        fixed: u32,
        eps: f64,
    ) -> Op {
        let n = uniform(
            &self.gpu.device,
            &NormParams::new(width, per_token, fixed, eps),
        );
        let groups = match fixed {
            0 => Groups::PerToken {
                per_token: per_token as u32,
                y: 1,
            },
            rows => Groups::Fixed([rows, 1, 1]),
        };
        Op::new(
            self.pool,
            &RmsNorm,
            &[src, dst, weight, &n, self.step],
            groups,
        )
    }

    /// y += b for each token's row of `width`.
    fn bias(&self, y: &wgpu::Buffer, b: &wgpu::Buffer, width: usize) -> Op {
        let shape = uniform(
            &self.gpu.device,
            &Shape {
                width: width as u32,
                b_len: width as u32,
                fixed: 0,
            },
        );
        Op::new(
            self.pool,
            &Add,
            &[y, b, &shape, self.step],
            Groups::Values {
                width: width as u32,
                fixed: 0,
            },
        )
    }
}

impl ForwardPass {
    pub fn build(
        gpu: &Gpu,
        pool: &Pool,
        c: &ModelConfig,
        w: &Weights<GpuMatrix, wgpu::Buffer>,
        caches: &[LayerCache],
        slice: usize,
        capacity: usize,
    ) -> Self {
        let (e, hd, f, v) = (c.n_embd, c.head_dim, c.n_ff, c.vocab_size);
        let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
        let step = uniform(&gpu.device, &Step { seq: 0, start: 0 });
        let mut b = Builder {
            gpu,
            pool,
            step: &step,
            bytes: 0,
        };
        let ids = b.buffer(slice, "ids");
        let x = b.buffer(slice * e, "x");
        let h = b.buffer(slice * e, "h");
        let (qa, ka, va) = (
            b.buffer(slice * qd, "qa"),
            b.buffer(slice * kvd, "ka"),
            b.buffer(slice * kvd, "va"),
        );
        let (qn, kn) = (b.buffer(slice * qd, "qn"), b.buffer(slice * kvd, "kn"));
        let q = b.buffer(slice * qd, "q");
        let att = b.buffer(slice * qd, "att");
        let (gate, up) = (b.buffer(slice * f, "gate"), b.buffer(slice * f, "up"));
        let scores = b.buffer(
            attention::scratch_bytes(c.n_head, slice, capacity) as usize / 4,
            "scores",
        );
        let (last, last_h, logits) = (
            b.buffer(e, "last"),
            b.buffer(e, "last_h"),
            b.buffer(v, "logits"),
        );
        let table = rope::table(hd, c.rope_theta, w.rope_factors.as_deref(), capacity);
        b.bytes += (table.len() * 4) as u64;
        let table = storage_init(&gpu.device, &f32_bytes(&table), "rope table");

        let mut body = embed::dispatches(pool, gpu.caps, &w.embed, [&ids, &x, &step]);
        let embed_ops = body.len();
        let neox = !c.arch.interleaved_rope();
        let rope_q = uniform(&gpu.device, &RopeParams::new(c.n_head, hd, neox, capacity));
        let rope_k = uniform(
            &gpu.device,
            &RopeParams::new(c.n_head_kv, hd, neox, capacity),
        );
        let att_params = uniform(
            &gpu.device,
            &AttentionParams::new(c.n_head, c.n_head_kv, hd, capacity, slice),
        );
        let pairs = (hd as u32 / 2).div_ceil(32);
        for (l, cache) in w.layers.iter().zip(caches) {
            body.push(b.norm([&x, &h, &l.attn_norm], e, 1, 0, c.rms_eps));
            b.matmul(&mut body, &l.wq, [&h, &qa], None, false, 0);
            b.matmul(&mut body, &l.wk, [&h, &ka], None, false, 0);
            b.matmul(&mut body, &l.wv, [&h, &va], None, false, 0);
            if let Some([bq, bk, bv]) = &l.bias {
                body.push(b.bias(&qa, bq, qd));
                body.push(b.bias(&ka, bk, kvd));
                body.push(b.bias(&va, bv, kvd));
            }
            let (qs, ks) = match &l.qk_norm {
                Some([nq, nk]) => {
                    body.push(b.norm([&qa, &qn, nq], hd, c.n_head, 0, c.rms_eps));
                    body.push(b.norm([&ka, &kn, nk], hd, c.n_head_kv, 0, c.rms_eps));
                    (&qn, &kn)
                }
                None => (&qa, &ka),
            };
            body.push(Op::new(
                pool,
                &Rope::Queries,
                &[qs, &q, &table, &rope_q, &step],
                Groups::TokensInZ([pairs, c.n_head as u32]),
            ));
            body.push(Op::new(
                pool,
                &Rope::Store,
                &[ks, &cache.k, &table, &rope_k, &step, &va, &cache.v],
                Groups::TokensInZ([pairs, c.n_head_kv as u32]),
            ));
            body.push(Op::new(
                pool,
                &Attention,
                &[&q, &cache.k, &cache.v, &scores, &att, &att_params, &step],
                Groups::TokensInY(c.n_head as u32),
            ));
            // Residuals are added by the projections themselves, and the FFN's gating is read
            // by the down projection: no dispatch of their own.
            b.matmul(&mut body, &l.wo, [&att, &x], None, true, 0);
            body.push(b.norm([&x, &h, &l.ffn_norm], e, 1, 0, c.rms_eps));
            b.matmul(&mut body, &l.gate, [&h, &gate], None, false, 0);
            b.matmul(&mut body, &l.up, [&h, &up], None, false, 0);
            b.matmul(&mut body, &l.down, [&gate, &x], Some(&up), true, 0);
        }
        let mut head = vec![b.norm([&last, &last_h, &w.output_norm], e, 1, 1, c.rms_eps)];
        b.matmul(
            &mut head,
            w.output.as_ref().unwrap_or(&w.embed),
            [&last_h, &logits],
            None,
            false,
            1,
        );

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
        let per_layer = (body.len() - embed_ops) / c.n_layer.max(1);
        ForwardPass {
            io: Io {
                step,
                ids,
                x,
                last,
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
        }
    }
}
