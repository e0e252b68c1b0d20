//! IQ4_NL and IQ4_XS, the 4-bit formats candle lacks: llama.cpp falls back to IQ4_NL for rows that
//! are not a multiple of 256 in its Q2_K, Q3_K and IQ4_XS files (all of Qwen2.5-0.5B's 896-wide
//! rows), so those files cannot load without it. A 4-bit index picks one of 16 non-uniform
//! levels, times a block scale. Dequantization and the dot products follow ggml's reference code
//! (`dequantize_row_iq4_*`, `ggml_vec_dot_iq4_nl_q8_0`, `ggml_vec_dot_iq4_xs_q8_K`): integer
//! sums per 32 values, then one float multiply, so our results are ggml's up to float order.

use half::f16;

use crate::engine::cpu::activations::nearest_int;
use crate::gguf::TensorType;

/// ggml's `kvalues_iq4nl`: the 16 levels, shared by both formats.
pub const LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// IQ4_NL block: f16 `d`, then 16 bytes of index pairs (value j low nibble, j + 16 high).
pub const NL_BYTES: usize = 18;
/// IQ4_XS super-block of 256: f16 `d`, 16 high scale bits (2 per 32 values), 4 bytes of low
/// scale nibbles, then 8 runs of 16 index bytes laid out as IQ4_NL's.
pub const XS_BYTES: usize = 136;
/// Q8_0 activation block: f16 `d`, 32 i8.
const Q8_0_BYTES: usize = 34;
/// Q8_K activation block (candle's `BlockQ8K`, ggml's `block_q8_K`): f32 `d`, 256 i8, 16 i16 sums.
pub const Q8_K_BYTES: usize = 292;

fn half(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// The 6-bit scale of run `ib` (0..8) of an IQ4_XS super-block, minus its bias of 32.
fn xs_scale(block: &[u8], ib: usize) -> i32 {
    let high = u16::from_le_bytes([block[2], block[3]]);
    let low = (block[4 + ib / 2] >> (4 * (ib % 2))) & 15;
    (low as i32 | ((((high >> (2 * ib)) & 3) as i32) << 4)) - 32
}

/// 32 values from 16 index bytes: the low nibbles then the high ones.
fn run(qs: &[u8], scale: f32, out: &mut [f32]) {
    for j in 0..16 {
        out[j] = scale * LEVELS[(qs[j] & 15) as usize] as f32;
        out[j + 16] = scale * LEVELS[(qs[j] >> 4) as usize] as f32;
    }
}

/// Whole blocks of `ty` (IQ4_NL or IQ4_XS) as f32 values.
pub fn dequantize(ty: TensorType, raw: &[u8], out: &mut [f32]) {
    if ty == TensorType::IQ4_NL {
        for (b, o) in raw.chunks_exact(NL_BYTES).zip(out.chunks_exact_mut(32)) {
            run(&b[2..], half(b), o);
        }
    } else {
        for (b, o) in raw.chunks_exact(XS_BYTES).zip(out.chunks_exact_mut(256)) {
            let d = half(b);
            for (ib, o) in o.chunks_exact_mut(32).enumerate() {
                run(&b[8 + 16 * ib..], d * xs_scale(b, ib) as f32, o);
            }
        }
    }
}

/// Σ level·q over a run of 32: `qs` 16 index bytes, `q8` 32 activations.
#[inline]
fn run_dot(qs: &[u8], q8: &[u8]) -> i32 {
    // The table lookups first, then a plain 32-lane integer dot the compiler vectorizes.
    let mut w = [0i8; 32];
    for j in 0..16 {
        w[j] = LEVELS[(qs[j] & 15) as usize];
        w[j + 16] = LEVELS[(qs[j] >> 4) as usize];
    }
    w.iter()
        .zip(&q8[..32])
        .map(|(&a, &b)| a as i32 * b as i8 as i32)
        .sum()
}

/// One IQ4_NL row against one Q8_0 activation row (both as bytes, same number of blocks).
pub fn dot_nl(w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in w.chunks_exact(NL_BYTES).zip(x.chunks_exact(Q8_0_BYTES)) {
        sum += half(a) * half(b) * run_dot(&b[2..], &a[2..]) as f32;
    }
    sum
}

/// One IQ4_XS row against one Q8_K activation row (both as bytes, same number of super-blocks).
pub fn dot_xs(w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (b, a) in w.chunks_exact(XS_BYTES).zip(x.chunks_exact(Q8_K_BYTES)) {
        let d = half(b) * f32::from_le_bytes([a[0], a[1], a[2], a[3]]);
        let mut sumi = 0i32;
        for ib in 0..8 {
            sumi += xs_scale(b, ib) * run_dot(&b[8 + 16 * ib..], &a[4 + 32 * ib..]);
        }
        sum += d * sumi as f32;
    }
    sum
}

/// Index of the level nearest `x` (ggml's `best_index_int8`: ties go up).
fn nearest_level(x: f32) -> usize {
    if x <= LEVELS[0] as f32 {
        return 0;
    }
    if x >= LEVELS[15] as f32 {
        return 15;
    }
    let (mut lo, mut hi) = (0, 15);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < LEVELS[mid] as f32 {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - (LEVELS[hi - 1] as f32) < LEVELS[hi] as f32 - x {
        hi - 1
    } else {
        hi
    }
}

/// The scale that best fits 32 values to the levels (ggml's search without an importance
/// matrix: weights x², 15 trial scales around the one that maps the extreme to -127), and the
/// chosen indexes.
fn fit_run(x: &[f32], idx: &mut [u8]) -> f32 {
    const TRIES: i32 = 7;
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        idx.fill(0);
        return 0.0;
    }
    let fit = |id: f32, idx: Option<&mut [u8]>| {
        let (mut sqx, mut sq2) = (0f32, 0f32);
        let mut picks = [0u8; 32];
        for (j, &v) in x.iter().enumerate() {
            let l = nearest_level(id * v);
            picks[j] = l as u8;
            let (q, w) = (LEVELS[l] as f32, v * v);
            sqx += w * q * v;
            sq2 += w * q * q;
        }
        if let Some(idx) = idx {
            idx.copy_from_slice(&picks[..idx.len()]);
        }
        (sqx, sq2)
    };
    let (sqx, sq2) = fit(1.0 / (-max / LEVELS[0] as f32), Some(idx));
    let mut d = sqx / sq2;
    let mut best = d * sqx;
    for t in -TRIES..=TRIES {
        let (sqx, sq2) = fit((t as f32 + LEVELS[0] as f32) / max, None);
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            d = sqx / sq2;
            best = d * sqx;
        }
    }
    d
}

fn pack_run(idx: &[u8], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = idx[j] | (idx[j + 16] << 4);
    }
}

/// `values` (whole blocks of `ty`, IQ4_NL or IQ4_XS) quantized as ggml's `quantize_iq4_nl` and
/// `quantize_iq4_xs` do without an importance matrix.
pub fn quantize(ty: TensorType, values: &[f32]) -> Vec<u8> {
    let mut idx = [0u8; 256];
    if ty == TensorType::IQ4_NL {
        let mut out = vec![0u8; values.len() / 32 * NL_BYTES];
        for (x, b) in values.chunks_exact(32).zip(out.chunks_exact_mut(NL_BYTES)) {
            let d = fit_run(x, &mut idx[..32]);
            b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (l, &v) in idx.iter_mut().zip(x) {
                *l = nearest_level(id * v) as u8;
            }
            pack_run(&idx[..32], &mut b[2..]);
        }
        return out;
    }
    let mut out = vec![0u8; values.len() / 256 * XS_BYTES];
    for (x, b) in values.chunks_exact(256).zip(out.chunks_exact_mut(XS_BYTES)) {
        let mut scales = [0f32; 8];
        let mut max_scale = 0f32;
        for (ib, s) in scales.iter_mut().enumerate() {
            *s = fit_run(&x[32 * ib..32 * ib + 32], &mut idx[32 * ib..32 * ib + 32]);
            if s.abs() > max_scale.abs() {
                max_scale = *s;
            }
        }
        let d = -max_scale / 32.0;
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut high = 0u16;
        for (ib, s) in scales.iter().enumerate() {
            let l = nearest_int(id * s).clamp(-32, 31);
            let dl = d * l as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            let run = &x[32 * ib..32 * ib + 32];
            for (q, &v) in idx[32 * ib..32 * ib + 32].iter_mut().zip(run) {
                *q = nearest_level(idl * v) as u8;
            }
            let l = (l + 32) as u8;
            b[4 + ib / 2] |= (l & 15) << (4 * (ib % 2));
            high |= ((l >> 4) as u16) << (2 * ib);
            pack_run(
                &idx[32 * ib..32 * ib + 32],
                &mut b[8 + 16 * ib..24 + 16 * ib],
            );
        }
        b[2..4].copy_from_slice(&high.to_le_bytes());
    }
    out
}

#[cfg(test)]
pub(crate) mod reference {
    //! ggml's own blocks, dequantization and dot products (tests/data/ggml_iq4.json, written by
    //! scripts/ggml_quant_reference.py from llama.cpp's libggml).

    use crate::gguf::TensorType;

    pub struct Case {
        pub ty: TensorType,
        pub blocks: Vec<u8>,
        pub dequantized: Vec<f32>,
        /// `acts` rows of `rows` dot products.
        pub dots: Vec<f32>,
    }

    pub struct Reference {
        pub rows: usize,
        pub k: usize,
        pub acts: usize,
        pub weights: Vec<f32>,
        pub x: Vec<f32>,
        pub cases: Vec<Case>,
    }

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        crate::hex::decode(v.as_str().expect("hex string")).expect("hex")
    }

    fn floats(v: &serde_json::Value) -> Vec<f32> {
        bytes(v)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub fn load() -> Reference {
        let j: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/ggml_iq4.json")).unwrap();
        let n = |k: &str| j[k].as_u64().unwrap() as usize;
        Reference {
            rows: n("rows"),
            k: n("k"),
            acts: n("acts"),
            weights: floats(&j["weights"]),
            x: floats(&j["x"]),
            cases: j["types"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| Case {
                    ty: TensorType::from_id(t["id"].as_u64().unwrap() as u32).unwrap(),
                    blocks: bytes(&t["blocks"]),
                    dequantized: floats(&t["dequantized"]),
                    dots: floats(&t["dots"]),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn dequantization_is_ggmls_bit_for_bit() {
        let r = reference::load();
        assert_eq!(r.cases.len(), 2);
        for c in &r.cases {
            let mut got = vec![0f32; r.rows * r.k];
            dequantize(c.ty, &c.blocks, &mut got);
            assert_eq!(got, c.dequantized, "{}", c.ty.name);
            // And the blocks really are a quantization of the weights.
            let rms = (got
                .iter()
                .zip(&r.weights)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                / got.len() as f32)
                .sqrt();
            assert!(rms < 0.01, "{}: rms {rms}", c.ty.name);
        }
    }

    /// Our quantizer picks ggml's blocks from the same weights (the fixtures' IQ4 files and the
    /// GPU kernel tests' weights come from it).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn quantization_matches_ggmls() {
        let r = reference::load();
        for c in &r.cases {
            let ours = quantize(c.ty, &r.weights);
            let blocks = c.blocks.len() / c.ty.type_size;
            let same = ours
                .chunks_exact(c.ty.type_size)
                .zip(c.blocks.chunks_exact(c.ty.type_size))
                .filter(|(a, b)| a == b)
                .count();
            assert_eq!(
                same, blocks,
                "{}: {same} of {blocks} blocks as ggml's",
                c.ty.name
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn xs_scales_read_both_halves() {
        let mut b = [0u8; XS_BYTES];
        // Run 5: low nibble 0xA in byte 4 + 2 (high half), high bits 0b10 at bits 10..11.
        b[6] = 0xA0;
        b[2..4].copy_from_slice(&(0b10u16 << 10).to_le_bytes());
        assert_eq!(xs_scale(&b, 5), (0xA | 0b10 << 4) - 32);
        assert_eq!(xs_scale(&b, 4), -32);
    }
}
