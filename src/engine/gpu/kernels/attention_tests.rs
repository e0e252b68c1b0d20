use super::*;
use crate::engine::gpu::kernels::testing::{self, assert_close, random};
use crate::engine::gpu::kernels::{
    bytes_f32, f32_bytes, storage, storage_init, uniform, Op, Pool, Step,
};

/// One attention case's f64 reference: outputs, and the cache rows the step writes.
struct Reference {
    out: Vec<f32>,
    keys: Vec<f32>,
}

/// Rotates `x` (one head) to `pos` with the shared angle table, NeoX or interleaved pairs.
fn rotated(x: &[f64], table: &[f32], pos: usize, neox: bool) -> Vec<f64> {
    let hd = x.len();
    let mut out = x.to_vec();
    for j in 0..hd / 2 {
        let (a, b) = if neox {
            (j, j + hd / 2)
        } else {
            (2 * j, 2 * j + 1)
        };
        let (c, s) = (
            table[2 * (pos * hd / 2 + j)] as f64,
            table[2 * (pos * hd / 2 + j) + 1] as f64,
        );
        out[a] = x[a] * c - x[b] * s;
        out[b] = x[a] * s + x[b] * c;
    }
    out
}

fn normalized(x: &[f32], weight: Option<&[f32]>, eps: f64) -> Vec<f64> {
    let Some(w) = weight else {
        return x.iter().map(|&v| v as f64).collect();
    };
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &w)| v as f64 * inv * w as f64)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn reference(
    s: Shape,
    start: usize,
    seq: usize,
    qkv: &[f32],
    kc: &[f32],
    vc: &[f32],
    norms: Option<&[f32]>,
    table: &[f32],
) -> Reference {
    let (heads, kv, hd, cap) = (s.heads, s.kv_heads, s.head_dim, s.capacity);
    let width = (heads + 2 * kv) * hd;
    let eps = s.qk_norm.unwrap_or(0.0);
    let (nq, nk) = (norms.map(|n| &n[..hd]), norms.map(|n| &n[hd..]));
    let key = |g: usize, j: usize| -> Vec<f64> {
        if j < start {
            return kc[(g * cap + j) * hd..][..hd]
                .iter()
                .map(|&v| v as f64)
                .collect();
        }
        let raw = &qkv[(j - start) * width + (heads + g) * hd..][..hd];
        rotated(&normalized(raw, nk, eps), table, j, s.neox)
    };
    let value = |g: usize, j: usize, d: usize| -> f64 {
        match j < start {
            true => vc[(g * cap + j) * hd + d] as f64,
            false => qkv[(j - start) * width + (heads + kv + g) * hd + d] as f64,
        }
    };
    let mut out = vec![0f32; seq * heads * hd];
    for i in 0..seq {
        let pos = start + i;
        for h in 0..heads {
            let g = h / (heads / kv);
            let raw = &qkv[i * width + h * hd..][..hd];
            let q = rotated(&normalized(raw, nq, eps), table, pos, s.neox);
            let scores: Vec<f64> = (0..=pos)
                .map(|j| {
                    let k = key(g, j);
                    (0..hd).map(|d| q[d] * k[d]).sum::<f64>() / (hd as f64).sqrt()
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
            let total: f64 = e.iter().sum();
            for d in 0..hd {
                let o: f64 = (0..=pos).map(|j| e[j] * value(g, j, d)).sum();
                out[(i * heads + h) * hd + d] = (o / total) as f32;
            }
        }
    }
    let mut keys = kc.to_vec();
    for g in 0..kv {
        for i in 0..seq {
            let k = key(g, start + i);
            for d in 0..hd {
                keys[(g * cap + start + i) * hd + d] = k[d] as f32;
            }
        }
    }
    Reference { out, keys }
}

/// Against an f64 softmax(q·kᵀ/√d)·v with the causal mask and grouped heads, the step's keys
/// normalized (Qwen3's q/k norm) and rotated (NeoX and interleaved pairs) from the raw Q·K·V
/// rows: decode in one chunk and across two and three (combined), prompt slices from position
/// 0 and across a chunk boundary. Also the cache afterwards: the step's rotated keys and its
/// values written, the cached rows untouched. Tolerance 1e-5 of max(|v|, 1).
async fn attention_matches_reference() {
    let gpu = testing::gpu().await;
    let pool = Pool::new(&gpu.device);
    for (heads, kv, hd, start, seq, neox, qk_norm) in [
        (14usize, 2usize, 64usize, 70usize, 1u32, true, false),
        (4, 2, 64, 300, 1, true, true),
        (4, 2, 64, 250, 9, false, true),
        (2, 1, 128, 600, 3, true, false),
        (6, 6, 32, 0, 5, false, false),
    ] {
        let cap = start + seq as usize + 3;
        let shape = Shape {
            heads,
            kv_heads: kv,
            head_dim: hd,
            capacity: cap,
            neox,
            qk_norm: qk_norm.then_some(1e-6),
        };
        let width = (heads + 2 * kv) * hd;
        let qkv = random(hd as u64 + start as u64, seq as usize * width, 1.0);
        let kc = random(11, kv * cap * hd, 1.0);
        let vc = random(12, kv * cap * hd, 1.0);
        let norms: Vec<f32> = random(13, 2 * hd, 0.2).iter().map(|v| 1.0 + v).collect();
        let table = rope_table(hd, 10000.0, None, cap);
        let norms_used = qk_norm.then_some(norms.as_slice());
        let expect = reference(
            shape,
            start,
            seq as usize,
            &qkv,
            &kc,
            &vc,
            norms_used,
            &table,
        );

        let buffer = |v: &[f32], label| storage_init(&gpu.device, &f32_bytes(v), label);
        let (qb, kb, vb, tb, nb) = (
            buffer(&qkv, "qkv"),
            buffer(&kc, "k"),
            buffer(&vc, "v"),
            buffer(&table, "table"),
            buffer(&norms, "norms"),
        );
        let parts = storage(
            &gpu.device,
            scratch_bytes(heads, hd, seq as usize, cap),
            "parts",
        );
        let out = storage(&gpu.device, (expect.out.len() * 4) as u64, "out");
        let step = Step {
            seq,
            start: start as u32,
        };
        let (pb, sb) = (
            uniform(&gpu.device, &AttentionParams::new(shape)),
            uniform(&gpu.device, &step),
        );
        let buffers = [&qb, &kb, &vb, &tb, &nb, &parts, &out, &pb, &sb];
        let ops: Vec<Op> = [Attention::Chunks, Attention::Combine]
            .into_iter()
            .map(|k| Op::new(&pool, &k, &buffers, k.groups(heads as u32)))
            .collect();
        let what = format!(
            "heads {heads}/{kv} dim {hd} start {start} seq {seq} neox {neox} q/k norm {qk_norm} ({} chunks)",
            splits(step.start, seq)
        );
        let got = bytes_f32(&testing::run(&gpu, &ops, step, &out).await);
        let scale = vec![1f32; got.len()];
        assert_close(&got, &expect.out, &scale, 1e-5, &what);
        let keys = bytes_f32(&testing::run(&gpu, &[], step, &kb).await);
        let scale = vec![1f32; keys.len()];
        assert_close(&keys, &expect.keys, &scale, 1e-5, &format!("{what}: keys"));
        let values = bytes_f32(&testing::run(&gpu, &[], step, &vb).await);
        for g in 0..kv {
            for i in 0..seq as usize {
                let at = (g * cap + start + i) * hd;
                let from = i * width + (heads + kv + g) * hd;
                assert_eq!(
                    values[at..at + hd],
                    qkv[from..from + hd],
                    "{what}: value g{g} t{i}"
                );
            }
            let cached = g * cap * hd..(g * cap + start) * hd;
            assert_eq!(
                values[cached.clone()],
                vc[cached],
                "{what}: cached values kept"
            );
        }
    }
}
testing::both!(attention_matches_reference);
