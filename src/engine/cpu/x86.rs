//! x86-64 dot products for the formats the benchmarks and most web models use (Q4_0, Q8_0
//! weights against Q8_0 activations): AVX2, and AVX512-VNNI where the CPU has it. A tile dots
//! up to four weight rows against up to four activation rows, so each unpacked weight block and
//! each activation block is loaded once per tile instead of once per dot product. Integer math
//! is exact; per block the float steps are ggml's (scale product, fused multiply-add), so results
//! match llama.cpp.

use std::arch::x86_64::*;

/// Bytes of one block: Q4_0 (f16 scale, 16 bytes of nibbles), Q5_0 (f16, 32 fifth bits, 16
/// bytes of nibbles), Q8_0 (f16, 32 i8).
pub(super) const Q4_0_BYTES: usize = 18;
pub(super) const Q5_0_BYTES: usize = 22;
pub(super) const Q8_0_BYTES: usize = 34;

/// Whether this CPU has AVX512-VNNI (with 256-bit forms), used for the byte dot products.
fn vnni() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
    })
}

/// Whether this CPU runs the kernels here.
pub(super) fn available() -> bool {
    use std::sync::OnceLock;
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// The tile format for weights of `dtype`, when this CPU can run it.
pub(super) fn format_for(dtype: candle_core::quantized::GgmlDType) -> Option<TileFormat> {
    use candle_core::quantized::GgmlDType as D;
    if !available() {
        return None;
    }
    match dtype {
        D::Q4_0 => Some(TileFormat::Q4_0),
        D::Q5_0 => Some(TileFormat::Q5_0),
        D::Q8_0 => Some(TileFormat::Q8_0),
        _ => None,
    }
}

/// Weight format of a tile call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TileFormat {
    Q4_0,
    Q5_0,
    Q8_0,
}

impl TileFormat {
    pub(super) fn block_bytes(self) -> usize {
        match self {
            TileFormat::Q4_0 => Q4_0_BYTES,
            TileFormat::Q5_0 => Q5_0_BYTES,
            TileFormat::Q8_0 => Q8_0_BYTES,
        }
    }
}

const Q4: u8 = 0;
const Q5: u8 = 1;
const Q8: u8 = 2;

/// out[a][r] = dot(weight row r, activation row a) for R weight rows and A activation rows.
/// `w[r]` and `x[a]` are whole rows of blocks as stored; `kb` blocks each.
///
/// # Safety
/// `available()` must be true; every slice must hold `kb` blocks of its format.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile<const R: usize, const A: usize>(
    format: TileFormat,
    w: [&[u8]; R],
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    match (format, vnni()) {
        (TileFormat::Q4_0, true) => tile_vnni::<R, A, Q4>(w, x, kb),
        (TileFormat::Q5_0, true) => tile_vnni::<R, A, Q5>(w, x, kb),
        (TileFormat::Q8_0, true) => tile_vnni::<R, A, Q8>(w, x, kb),
        (TileFormat::Q4_0, false) => tile_of::<R, A, Q4>(w, x, kb),
        (TileFormat::Q5_0, false) => tile_of::<R, A, Q5>(w, x, kb),
        (TileFormat::Q8_0, false) => tile_of::<R, A, Q8>(w, x, kb),
    }
}

/// The tile with `vpdpbusd`: Q4_0/Q5_0 quants stay unsigned (0..15, 0..31) and their offset
/// (-8, -16) is folded in as offset times the sum of x, the accumulator's starting value; Q8_0
/// uses |w| and x with w's sign.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
unsafe fn tile_vnni<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let zero = _mm256_setzero_si256();
    let offset = _mm256_set1_epi8(if F == Q5 { 16 } else { 8 });
    for b in 0..kb {
        let (mut xd, mut xq, mut start) = ([0f32; A], [zero; A], [zero; A]);
        for a in 0..A {
            (xd[a], xq[a]) = activation(x[a], b);
            if F != Q8 {
                start[a] = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, offset, xq[a]));
            }
        }
        for r in 0..R {
            let (wd, q) = weights::<F>(w[r], b);
            let uq = if F == Q8 { _mm256_abs_epi8(q) } else { q };
            for a in 0..A {
                let sx = if F == Q8 {
                    _mm256_sign_epi8(xq[a], q)
                } else {
                    xq[a]
                };
                let dot = _mm256_dpbusd_epi32(start[a], uq, sx);
                acc[a][r] = _mm256_fmadd_ps(
                    _mm256_set1_ps(wd * xd[a]),
                    _mm256_cvtepi32_ps(dot),
                    acc[a][r],
                );
            }
        }
    }
    sums(acc)
}

/// The tile with AVX2 alone: signed × signed bytes through `maddubs` as |w| × (x with w's sign).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let offset = _mm256_set1_epi8(if F == Q5 { 16 } else { 8 });
    let ones = _mm256_set1_epi16(1);
    for b in 0..kb {
        let (mut xd, mut xq) = ([0f32; A], [_mm256_setzero_si256(); A]);
        for a in 0..A {
            (xd[a], xq[a]) = activation(x[a], b);
        }
        for r in 0..R {
            let (wd, q) = weights::<F>(w[r], b);
            let q = if F == Q8 {
                q
            } else {
                _mm256_sub_epi8(q, offset)
            };
            let aw = _mm256_sign_epi8(q, q);
            for a in 0..A {
                let sx = _mm256_sign_epi8(xq[a], q);
                let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
                acc[a][r] = _mm256_fmadd_ps(
                    _mm256_set1_ps(wd * xd[a]),
                    _mm256_cvtepi32_ps(dot),
                    acc[a][r],
                );
            }
        }
    }
    sums(acc)
}

/// Block `b` of a Q8_0 activation row: scale and 32 signed quants.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn activation(x: &[u8], b: usize) -> (f32, __m256i) {
    let p = x.as_ptr().add(b * Q8_0_BYTES);
    (
        half_to_f32(u16::from_le_bytes([*p, *p.add(1)])),
        _mm256_loadu_si256(p.add(2) as *const __m256i),
    )
}

/// Block `b` of a weight row: scale and 32 quants, unsigned for Q4_0 (0..15) and Q5_0 (0..31),
/// signed for Q8_0.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn weights<const F: u8>(w: &[u8], b: usize) -> (f32, __m256i) {
    let p = w
        .as_ptr()
        .add(b * [Q4_0_BYTES, Q5_0_BYTES, Q8_0_BYTES][F as usize]);
    let d = half_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
    if F == Q8 {
        return (d, _mm256_loadu_si256(p.add(2) as *const __m256i));
    }
    // 16 bytes of nibbles: low nibbles are values 0..16, high nibbles 16..32.
    let raw = _mm_loadu_si128(p.add(if F == Q5 { 6 } else { 2 }) as *const __m128i);
    let q = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
        _mm256_set1_epi8(0x0f),
    );
    if F == Q5 {
        return (
            d,
            _mm256_or_si256(
                q,
                _mm256_and_si256(bits_to_bytes(p.add(2)), _mm256_set1_epi8(0x10)),
            ),
        );
    }
    (d, q)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums<const R: usize, const A: usize>(acc: [[__m256; R]; A]) -> [[f32; R]; A] {
    let mut out = [[0f32; R]; A];
    for a in 0..A {
        for r in 0..R {
            out[a][r] = hsum(acc[a][r]);
        }
    }
    out
}

/// 32 bits at `p` (little endian) as 32 bytes, 0xFF where the bit is set (ggml's trick).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    let bits = i32::from_le_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]);
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits),
        _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0,
        ),
    );
    let probe = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(probe, _mm256_set1_epi64x(-1))
}

#[target_feature(enable = "f16c")]
#[inline]
unsafe fn half_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// A row of `kb` blocks with random quants and scales near 0.01.
    fn row(rng: &mut SeededRng, kb: usize, f: TileFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..kb {
            out.extend_from_slice(
                &half::f16::from_f32(0.005 + rng.next_f32() * 0.01).to_le_bytes(),
            );
            match f {
                TileFormat::Q8_0 => {
                    // Q8_0 quants are in -127..=127 (the quantizer never makes -128).
                    out.extend((0..32).map(|_| ((rng.next_u64() % 255) as i32 - 127) as i8 as u8));
                }
                _ => out.extend((0..f.block_bytes() - 2).map(|_| rng.next_u64() as u8)),
            }
        }
        out
    }

    /// The scalar definition: per block, scale product times the integer dot product.
    fn reference(w: &[u8], x: &[u8], kb: usize, f: TileFormat) -> f32 {
        let wb = f.block_bytes();
        let mut sum = 0f32;
        for b in 0..kb {
            let (wp, xp) = (&w[b * wb..], &x[b * Q8_0_BYTES..]);
            let d = half::f16::from_le_bytes([wp[0], wp[1]]).to_f32()
                * half::f16::from_le_bytes([xp[0], xp[1]]).to_f32();
            let mut dot = 0i32;
            for i in 0..32 {
                let wq = match f {
                    TileFormat::Q4_0 => {
                        let byte = wp[2 + i % 16];
                        (if i < 16 { byte & 15 } else { byte >> 4 }) as i32 - 8
                    }
                    TileFormat::Q5_0 => {
                        let byte = wp[6 + i % 16];
                        let low = if i < 16 { byte & 15 } else { byte >> 4 } as i32;
                        let high = (u32::from_le_bytes([wp[2], wp[3], wp[4], wp[5]]) >> i) & 1;
                        (low | (high as i32) << 4) - 16
                    }
                    TileFormat::Q8_0 => wp[2 + i] as i8 as i32,
                };
                dot += wq * (xp[2 + i] as i8 as i32);
            }
            sum += d * dot as f32;
        }
        sum
    }

    #[test]
    fn avx2_and_vnni_tiles_equal_the_scalar_definition() {
        if !available() {
            return;
        }
        let kb = 28; // 896 values, Qwen2.5-0.5B's width
        let mut rng = SeededRng::new(3);
        for f in [TileFormat::Q4_0, TileFormat::Q5_0, TileFormat::Q8_0] {
            let ws: Vec<Vec<u8>> = (0..4).map(|_| row(&mut rng, kb, f)).collect();
            let xs: Vec<Vec<u8>> = (0..4)
                .map(|_| row(&mut rng, kb, TileFormat::Q8_0))
                .collect();
            let w = [&ws[0][..], &ws[1][..], &ws[2][..], &ws[3][..]];
            let x = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
            let avx2 = unsafe {
                match f {
                    TileFormat::Q4_0 => tile_of::<4, 4, Q4>(w, x, kb),
                    TileFormat::Q5_0 => tile_of::<4, 4, Q5>(w, x, kb),
                    TileFormat::Q8_0 => tile_of::<4, 4, Q8>(w, x, kb),
                }
            };
            for a in 0..4 {
                for r in 0..4 {
                    let want = reference(w[r], x[a], kb, f);
                    assert!(
                        (avx2[a][r] - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "avx2 {} {a},{r}",
                        f.block_bytes()
                    );
                }
            }
            if vnni() {
                let v = unsafe {
                    match f {
                        TileFormat::Q4_0 => tile_vnni::<4, 4, Q4>(w, x, kb),
                        TileFormat::Q5_0 => tile_vnni::<4, 4, Q5>(w, x, kb),
                        TileFormat::Q8_0 => tile_vnni::<4, 4, Q8>(w, x, kb),
                    }
                };
                for a in 0..4 {
                    for r in 0..4 {
                        assert!(
                            (v[a][r] - avx2[a][r]).abs() <= 1e-5 * avx2[a][r].abs().max(1.0),
                            "vnni {} {a},{r}",
                            f.block_bytes()
                        );
                    }
                }
            }
        }
    }
}
