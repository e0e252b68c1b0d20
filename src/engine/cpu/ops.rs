//! The forward pass's work between matrix products, on plain f32 rows: RMS norms, RoPE, attention
//! over the KV cache, SiLU·up. candle's op chain did this before: a tensor allocated per op, and
//! its row loops split over rayon, which in the threaded wasm build woke the pool's sleeping
//! workers for rows of a few hundred floats, about 150 times per decode step.
//!
//! Summation order moves the logits against llama.cpp's more than one would guess; on SmolLM2-135M
//! (tests/real_model_logits.rs, bar: mean KL 0.002814, 8 top-1 misses) these choices measured:
//! RMS norm's sum of squares in f32 and a division by the root, as candle did (an f64 sum and a
//! multiplication by the inverse root, as ggml does, gave KL 0.003211); softmax's denominator in
//! f64, as ggml (KL 0.002521, 7 misses; an f32 sum 0.002698, 5 misses). candle's chain: 0.002786.

/// `x` (rows of `w.len()` values) RMS-normalised and scaled by `w`.
pub(super) fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (row, dst) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        norm_row(row, w, eps, dst);
    }
    out
}

/// `rms_norm` in place, for Qwen3's per-head q and k norms.
pub(super) fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let mut row = vec![0f32; w.len()];
    for dst in x.chunks_exact_mut(w.len()) {
        row.copy_from_slice(dst);
        norm_row(&row, w, eps, dst);
    }
}

fn norm_row(row: &[f32], w: &[f32], eps: f32, dst: &mut [f32]) {
    let sum: f32 = row.iter().map(|&v| v * v).sum();
    let m = (sum / row.len() as f32 + eps).sqrt();
    for ((d, &v), &g) in dst.iter_mut().zip(row).zip(w) {
        *d = v / m * g;
    }
}

/// Adds `b` to each row of `x`.
pub(super) fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        for (v, &a) in row.iter_mut().zip(b) {
            *v += a;
        }
    }
}

/// `x += y`.
pub(super) fn add(x: &mut [f32], y: &[f32]) {
    for (v, &a) in x.iter_mut().zip(y) {
        *v += a;
    }
}

/// SiLU(gate) · up, as ggml's `silu` (x / (1 + e^−x)) then `mul`.
pub(super) fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| g / (1.0 + (-g).exp()) * u)
        .collect()
}

/// Rotates every head of `seq` rows (`heads` × `dim` values each) by its row's angles: `cos` and
/// `sin` hold `dim / 2` values per row. `interleaved`: pairs (2i, 2i+1) as Llama's GGUFs store
/// them; else pairs (i, i + dim/2), the NeoX layout of Qwen's.
pub(super) fn rope(x: &mut [f32], dim: usize, cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = dim / 2;
    let row_len = x.len() / (cos.len() / half).max(1);
    for (r, row) in x.chunks_exact_mut(row_len).enumerate() {
        let (c, s) = (
            &cos[r * half..(r + 1) * half],
            &sin[r * half..(r + 1) * half],
        );
        for head in row.chunks_exact_mut(dim) {
            for i in 0..half {
                let (a, b) = if interleaved {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c[i] - x1 * s[i];
                head[b] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/// Dot product with eight running sums, so the compiler keeps them in vector registers (one
/// running sum is a chain of dependent adds that no compiler may reorder).
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The shape of an attention call.
#[derive(Clone, Copy)]
pub(super) struct Heads {
    pub n_head: usize,
    pub n_kv: usize,
    pub dim: usize,
    /// 1/√dim.
    pub scale: f32,
}

/// Causal attention of `seq` query rows (`n_head × dim` each), the first at position `start`,
/// over the cached keys and values of positions `0..start + seq` (rows of `n_kv × dim`): query
/// head h reads KV head h / (n_head / n_kv). Returns `seq` rows of `n_head × dim`. A prefill's rows
/// run on the step's crew.
pub(super) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: Heads,
    start: usize,
    seq: usize,
) -> Vec<f32> {
    let width = heads.n_head * heads.dim;
    let mut out = vec![0f32; seq * width];
    let row = |i: usize, dst: &mut [f32]| {
        attend_row(
            &q[i * width..(i + 1) * width],
            k,
            v,
            heads,
            start + i + 1,
            dst,
        )
    };
    let work = seq * (start + seq) * width;
    let rows: Vec<(usize, &mut [f32])> = out.chunks_mut(width).enumerate().collect();
    let rows = if seq > 1 && work >= super::columns::CREW_MACS {
        super::crew::for_each(rows, |(i, dst)| row(i, dst)).err()
    } else {
        Some(rows)
    };
    if let Some(rows) = rows {
        for (i, dst) in rows {
            row(i, dst);
        }
    }
    out
}

/// One query row over the first `seen` cached positions, every head; as ggml's `soft_max_ext`:
/// scores scaled, the maximum subtracted, exponentials summed in f64.
fn attend_row(q: &[f32], k: &[f32], v: &[f32], h: Heads, seen: usize, out: &mut [f32]) {
    let kv_width = h.n_kv * h.dim;
    let group = h.n_head / h.n_kv;
    let mut p = vec![0f32; seen];
    for head in 0..h.n_head {
        let g = head / group;
        let qh = &q[head * h.dim..(head + 1) * h.dim];
        let at = |j: usize| j * kv_width + g * h.dim;
        let mut max = f32::NEG_INFINITY;
        for (j, s) in p.iter_mut().enumerate() {
            *s = dot(qh, &k[at(j)..at(j) + h.dim]) * h.scale;
            max = max.max(*s);
        }
        let mut sum = 0f64;
        for s in p.iter_mut() {
            *s = (*s - max).exp();
            sum += *s as f64;
        }
        let inv = (1.0 / sum) as f32;
        let dst = &mut out[head * h.dim..(head + 1) * h.dim];
        for (j, &pj) in p.iter().enumerate() {
            let w = pj * inv;
            for (d, &x) in dst.iter_mut().zip(&v[at(j)..at(j) + h.dim]) {
                *d += w * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    fn random(rng: &mut SeededRng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_normal()).collect()
    }

    /// Attention equals its definition computed in f64 (scores, softmax over the causal prefix,
    /// weighted sum), for grouped heads, a prefill of several rows after cached positions, and a
    /// decode row; to 1e-5.
    #[test]
    fn attention_equals_its_definition() {
        let mut rng = SeededRng::new(3);
        let h = Heads {
            n_head: 6,
            n_kv: 2,
            dim: 16,
            scale: 0.25,
        };
        for (start, seq) in [(0usize, 5usize), (7, 3), (9, 1)] {
            let total = start + seq;
            let q = random(&mut rng, seq * h.n_head * h.dim);
            let k = random(&mut rng, total * h.n_kv * h.dim);
            let v = random(&mut rng, total * h.n_kv * h.dim);
            let got = attention(&q, &k, &v, h, start, seq);
            for i in 0..seq {
                for head in 0..h.n_head {
                    let g = head / (h.n_head / h.n_kv);
                    let qh = &q[(i * h.n_head + head) * h.dim..][..h.dim];
                    let kv = |t: &[f32], j: usize| t[(j * h.n_kv + g) * h.dim..][..h.dim].to_vec();
                    let seen = start + i + 1;
                    let s: Vec<f64> = (0..seen)
                        .map(|j| {
                            let kj = kv(&k, j);
                            qh.iter().zip(&kj).map(|(a, b)| (a * b) as f64).sum::<f64>() * 0.25
                        })
                        .collect();
                    let max = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..h.dim {
                        let want: f64 = (0..seen).map(|j| e[j] / sum * kv(&v, j)[d] as f64).sum();
                        let have = got[(i * h.n_head + head) * h.dim + d] as f64;
                        assert!((want - have).abs() < 1e-5, "row {i} head {head} d {d}");
                    }
                }
            }
        }
    }

    /// RMS norm, RoPE in both layouts and SiLU·up against their definitions.
    #[test]
    fn row_ops_equal_their_definitions() {
        let mut rng = SeededRng::new(4);
        let (x, w) = (random(&mut rng, 3 * 8), random(&mut rng, 8));
        let got = rms_norm(&x, &w, 1e-6);
        for r in 0..3 {
            let row = &x[r * 8..(r + 1) * 8];
            let rms = (row.iter().map(|v| (v * v) as f64).sum::<f64>() / 8.0 + 1e-6).sqrt();
            for i in 0..8 {
                let want = row[i] as f64 / rms * w[i] as f64;
                assert!((got[r * 8 + i] as f64 - want).abs() < 1e-5);
            }
        }
        // Two rows of two heads of 4; angles per row.
        let (cos, sin): (Vec<f32>, Vec<f32>) = (0..4).map(|i| (i as f32).sin_cos()).unzip();
        let (sin, cos) = (cos, sin);
        for interleaved in [false, true] {
            let x = random(&mut rng, 2 * 2 * 4);
            let mut y = x.clone();
            rope(&mut y, 4, &cos, &sin, interleaved);
            for r in 0..2 {
                for head in 0..2 {
                    let at = (r * 2 + head) * 4;
                    for i in 0..2 {
                        let (a, b) = if interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + 2)
                        };
                        let (c, s) = (cos[r * 2 + i], sin[r * 2 + i]);
                        let (x0, x1) = (x[at + a], x[at + b]);
                        assert!((y[at + a] - (x0 * c - x1 * s)).abs() < 1e-6);
                        assert!((y[at + b] - (x0 * s + x1 * c)).abs() < 1e-6);
                    }
                }
            }
        }
        let (g, u) = (random(&mut rng, 9), random(&mut rng, 9));
        for ((o, g), u) in silu_mul(&g, &u).iter().zip(&g).zip(&u) {
            let want = *g as f64 / (1.0 + (-*g as f64).exp()) * *u as f64;
            assert!((*o as f64 - want).abs() < 1e-6);
        }
    }
}
