//! Causal attention over the KV cache with grouped-query heads, for decode and prompt slices.

use super::{with_step, Binding, Kernel};

pub struct Attention;

impl Kernel for Attention {
    fn key(&self) -> String {
        "attention".into()
    }

    fn source(&self) -> String {
        with_step(include_str!("../../../../shaders/attention.wgsl"))
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[Read, Read, Read, ReadWrite, ReadWrite, Uniform, Uniform]
    }

    fn class(&self) -> &'static str {
        "attention"
    }
}

/// The `AttentionParams` uniform (`shaders/attention.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub capacity: u32,
    /// Tokens per step the scratch has rows for.
    pub slice: u32,
    /// 1/√head_dim.
    pub scale: f32,
}

impl AttentionParams {
    pub fn new(
        heads: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        slice: usize,
    ) -> Self {
        Self {
            heads: heads as u32,
            kv_heads: kv_heads as u32,
            head_dim: head_dim as u32,
            capacity: capacity as u32,
            slice: slice as u32,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }
}

/// The scratch the score rows need: heads × slice × capacity values.
pub fn scratch_bytes(heads: usize, slice: usize, capacity: usize) -> u64 {
    (heads * slice * capacity * 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, random};
    use crate::engine::gpu::kernels::{
        bytes_f32, f32_bytes, storage, storage_init, uniform, Groups, Op, Pool, Step,
    };

    /// Against an f64 softmax(q·kᵀ/√d)·v with the causal mask and grouped heads, for a decode
    /// step deep in the cache and for a prompt slice after cached positions. Tolerance 1e-5 of
    /// max(|v|, 1).
    async fn attention_matches_reference() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        for (heads, kv, hd, start, seq) in [
            (14usize, 2usize, 64usize, 70usize, 1u32),
            (4, 2, 64, 3, 9),
            (6, 6, 32, 0, 5),
            (2, 1, 128, 130, 2),
        ] {
            let (cap, slice) = (start + seq as usize + 3, 16usize);
            let q = random(hd as u64, seq as usize * heads * hd, 1.0);
            let kc = random(11, kv * cap * hd, 1.0);
            let vc = random(12, kv * cap * hd, 1.0);
            let mut expect = vec![0f32; seq as usize * heads * hd];
            for i in 0..seq as usize {
                for h in 0..heads {
                    let g = h / (heads / kv);
                    let n = start + i + 1;
                    let qv = &q[(i * heads + h) * hd..][..hd];
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..hd)
                                .map(|d| qv[d] as f64 * kc[(g * cap + j) * hd + d] as f64)
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for d in 0..hd {
                        let o: f64 = (0..n)
                            .map(|j| e[j] * vc[(g * cap + j) * hd + d] as f64)
                            .sum();
                        expect[(i * heads + h) * hd + d] = (o / total) as f32;
                    }
                }
            }
            let (qb, kb, vb) = (
                storage_init(&gpu.device, &f32_bytes(&q), "q"),
                storage_init(&gpu.device, &f32_bytes(&kc), "k"),
                storage_init(&gpu.device, &f32_bytes(&vc), "v"),
            );
            let scores = storage(&gpu.device, scratch_bytes(heads, slice, cap), "scores");
            let out = storage(&gpu.device, (expect.len() * 4) as u64, "out");
            let (pb, step) = (
                uniform(
                    &gpu.device,
                    &AttentionParams::new(heads, kv, hd, cap, slice),
                ),
                uniform(
                    &gpu.device,
                    &Step {
                        seq,
                        start: start as u32,
                    },
                ),
            );
            let op = Op::new(
                &pool,
                &Attention,
                &[&qb, &kb, &vb, &scores, &out, &pb, &step],
                Groups::TokensInY(heads as u32),
            );
            let got = bytes_f32(&testing::run(&gpu, &[op], seq, &out).await);
            let scale = vec![1f32; got.len()];
            assert_close(
                &got,
                &expect,
                &scale,
                1e-5,
                &format!("heads {heads}/{kv} dim {hd} start {start} seq {seq}"),
            );
        }
    }
    testing::both!(attention_matches_reference);
}
