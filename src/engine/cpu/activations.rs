//! Activations as ggml feeds them to its block dot products: each row quantized to the weight
//! type's dot-product format (Q8_0 or Q8_K) with ggml's exact rounding, once per step for all the
//! matrices that read it. Rounding as llama.cpp does is what keeps our logits on its.

use candle_core::quantized::k_quants::{BlockQ8K, BlockQ8_0, BlockQ8_1, GgmlType};
use candle_core::quantized::GgmlDType;
use half::f16;

/// Activation rows read by several matrices (Q, K and V; gate and up): quantized once for all of
/// them to Q8_0 (the dot-product format of Q4_0, Q5_0, Q8_0 and IQ4_NL), Q8_1 (Q4_1's) and Q8_K
/// (the K-quants' and IQ4_XS's).
pub(super) struct Activations<'a> {
    pub(super) x: &'a [f32],
    pub(super) m: usize,
    q8_0: std::cell::OnceCell<Vec<BlockQ8_0>>,
    q8_1: std::cell::OnceCell<Vec<BlockQ8_1>>,
    q8_k: std::cell::OnceCell<Vec<BlockQ8K>>,
}

impl<'a> Activations<'a> {
    /// `x` holds `m` rows.
    pub fn new(x: &'a [f32], m: usize) -> Self {
        Self {
            x,
            m,
            q8_0: std::cell::OnceCell::new(),
            q8_1: std::cell::OnceCell::new(),
            q8_k: std::cell::OnceCell::new(),
        }
    }

    /// The rows in `V`, the dot-product format of some weight type.
    pub fn quantized<V: GgmlType>(&self, k: usize) -> std::borrow::Cow<'_, [V]> {
        fn cached<'c, B: GgmlType, V: GgmlType>(
            cell: &'c std::cell::OnceCell<Vec<B>>,
            make: impl FnOnce() -> Vec<B>,
        ) -> std::borrow::Cow<'c, [V]> {
            let q = cell.get_or_init(make);
            // SAFETY: the callers match V::DTYPE to B's (one block type per DTYPE).
            std::borrow::Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(q.as_ptr() as *const V, q.len())
            })
        }
        match V::DTYPE {
            GgmlDType::Q8_0 => cached(&self.q8_0, || quantize_rows(self.x, self.m, k)),
            GgmlDType::Q8_1 => cached(&self.q8_1, || quantize_rows(self.x, self.m, k)),
            GgmlDType::Q8K => cached(&self.q8_k, || quantize_rows(self.x, self.m, k)),
            _ => std::borrow::Cow::Owned(quantize_rows(self.x, self.m, k)),
        }
    }
}

/// ggml's `nearest_int`: round half to even through the float mantissa.
pub(crate) fn nearest_int(v: f32) -> i32 {
    let bits = (v + 12_582_912.0).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// Activation rows in the dot-product format `V`; Q8_0 and Q8_K rounded exactly as ggml's x86
/// code does. Q8_1 keeps candle's rounding (half away from zero, by 1/d): on SmolLM2-135M's Q4_1
/// weights ggml's own Q8_1 rounding was measured further from llama.cpp's logits (KL 0.003109,
/// 10 top-1 misses, against 0.002786 and 8), its batched path not being its one-token path.
pub(super) fn quantize_rows<V: GgmlType>(x: &[f32], m: usize, k: usize) -> Vec<V> {
    let per_row = k / V::BLCK_SIZE;
    let mut out = vec![V::zeros(); m * per_row];
    match V::DTYPE {
        GgmlDType::Q8_0 => {
            // SAFETY: V is BlockQ8_0 here: repr(C) { d: f16, qs: [i8; 32] }, 34 bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 34)
            };
            for (xs, b) in x.chunks_exact(32).zip(bytes.chunks_exact_mut(34)) {
                let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
                for (q, v) in b[2..].iter_mut().zip(xs) {
                    *q = nearest_int(v * id) as i8 as u8;
                }
            }
        }
        GgmlDType::Q8K => {
            // SAFETY: V is BlockQ8K here: repr(C) { d: f32, qs: [i8; 256], bsums: [i16; 16] }.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 292)
            };
            for (xs, b) in x.chunks_exact(256).zip(bytes.chunks_exact_mut(292)) {
                quantize_q8_k(xs, b);
            }
        }
        _ => {
            for (xs, ys) in x.chunks_exact(k).zip(out.chunks_exact_mut(per_row)) {
                V::from_float(xs, ys);
            }
        }
    }
    out
}

/// ggml's `quantize_row_q8_K_ref` for one block of 256: the signed extreme maps to -127, values
/// round half to even (candle rounds half away from zero) and clamp at 127.
fn quantize_q8_k(xs: &[f32], b: &mut [u8]) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in xs {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    b.fill(0);
    if amax == 0.0 {
        return;
    }
    let iscale = -127.0 / max;
    for (q, v) in b[4..260].iter_mut().zip(xs) {
        *q = nearest_int(iscale * v).min(127) as i8 as u8;
    }
    for g in 0..16 {
        let sum: i32 = b[4 + 16 * g..20 + 16 * g]
            .iter()
            .map(|&q| q as i8 as i32)
            .sum();
        b[260 + 2 * g..262 + 2 * g].copy_from_slice(&(sum as i16).to_le_bytes());
    }
    b[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-126.6), -127);
    }
}
