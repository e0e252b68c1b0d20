//! x86-64 tiles (tiles.rs) for Q4_0, Q4_1, Q5_0 and Q8_0 weights against Q8_0 or Q8_1
//! activations: AVX2, and AVX512-VNNI where the CPU has it. Integer math is exact; per block the
//! float steps are ggml's (scale product, fused multiply-add; Q4_1's min × s summed aside), so
//! results match llama.cpp.

use std::arch::x86_64::*;

use super::tiles::{format_of, TileFormat, Q4, Q41, Q5, Q8};

/// Weight rows per decode pass: eight accumulators and one activation block fit the 16 AVX2
/// registers.
pub(super) const DECODE_ROWS: usize = 8;

/// The AVX2 tiles read every block as the file stores it (tiles.rs `quads`).
pub(super) const QUADS: bool = false;

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

/// The x86 tiles read activation blocks whole: nothing found beforehand (`simd128::ActBlock`).
pub(super) type ActBlock = ();

/// One `ActBlock` per activation block (a count, no allocation).
pub(super) fn act_blocks(_: TileFormat, _: &[u8], m: usize, kb: usize) -> Vec<ActBlock> {
    vec![(); m * kb]
}

/// out[a][r] = dot(weight row r, activation row a) for R weight rows and A activation rows.
/// `w[r]` starts at row r's first block, its next ones `stride` bytes apart (interleaved rows,
/// tiles.rs); `x[a]` is a whole activation row; `kb` blocks each.
///
/// # Safety
/// `available()` must be true; every slice must hold `kb` blocks of its format at its spacing.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile<const R: usize, const A: usize>(
    format: TileFormat,
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    _: [&[ActBlock]; A],
    kb: usize,
) -> [[f32; R]; A] {
    // VNNI for prefill tiles only: on an AMD EPYC (Zen, 1 thread) the AVX2 decode tile streamed
    // Q4_0 at 10 GB/s and the VNNI one at 5.7 (Q4_1: 13.5 and 9.8), while VNNI's 4×4 tiles ran
    // ~30 % faster (examples/bench_kernels).
    match (format, A > 1 && vnni()) {
        (TileFormat::Q4_0, true) => tile_vnni::<R, A, Q4>(w, stride, x, kb),
        (TileFormat::Q4_1, true) => tile_vnni::<R, A, Q41>(w, stride, x, kb),
        (TileFormat::Q5_0, true) => tile_vnni::<R, A, Q5>(w, stride, x, kb),
        (TileFormat::Q8_0, true) => tile_vnni::<R, A, Q8>(w, stride, x, kb),
        (TileFormat::Q4_0, false) => tile_of::<R, A, Q4>(w, stride, x, kb),
        (TileFormat::Q4_1, false) => tile_of::<R, A, Q41>(w, stride, x, kb),
        (TileFormat::Q5_0, false) => tile_of::<R, A, Q5>(w, stride, x, kb),
        (TileFormat::Q8_0, false) => tile_of::<R, A, Q8>(w, stride, x, kb),
    }
}

/// The tile with `vpdpbusd`: Q4_0/Q5_0 quants stay unsigned (0..15, 0..31) and their offset
/// (-8, -16) is folded in as offset times the sum of x, the accumulator's starting value; Q4_1's
/// are unsigned with no offset; Q8_0 uses |w| and x with w's sign.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
unsafe fn tile_vnni<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let mut mins = [[0f32; R]; A];
    let zero = _mm256_setzero_si256();
    let offset = _mm256_set1_epi8(if F == Q5 { 16 } else { 8 });
    for b in 0..kb {
        let (mut xd, mut xs, mut xq, mut start) = ([0f32; A], [0f32; A], [zero; A], [zero; A]);
        for a in 0..A {
            (xd[a], xs[a], xq[a]) = activation::<F>(x[a], b);
            if F == Q4 || F == Q5 {
                start[a] = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, offset, xq[a]));
            }
        }
        for r in 0..R {
            let (wd, wm, q) = weights::<F>(w[r].as_ptr().add(b * stride));
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
                if F == Q41 {
                    mins[a][r] += wm * xs[a];
                }
            }
        }
    }
    sums(acc, mins)
}

/// The tile with AVX2 alone. `maddubs` takes the 4- and 5-bit quants as they are stored
/// (unsigned) and their offset (8, 16) comes off as offset times the sum of x, found once per
/// activation block for all R rows: on an AMD EPYC (1 thread) the decode tile then streamed Q4_0
/// at 15.2 GB/s, against 11.3 with the offset subtracted per weight block and the sign trick.
/// Q8_0's signed quants go in as |w| × (x with w's sign).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let mut mins = [[0f32; R]; A];
    let offset = _mm256_set1_epi8(if F == Q5 { 16 } else { 8 });
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    for b in 0..kb {
        let (mut xd, mut xs, mut xq, mut start) = ([0f32; A], [0f32; A], [zero; A], [zero; A]);
        for a in 0..A {
            (xd[a], xs[a], xq[a]) = activation::<F>(x[a], b);
            if F == Q4 || F == Q5 {
                let offset_sum = _mm256_madd_epi16(_mm256_maddubs_epi16(offset, xq[a]), ones);
                start[a] = _mm256_sub_epi32(zero, offset_sum);
            }
        }
        for r in 0..R {
            let (wd, wm, q) = weights::<F>(w[r].as_ptr().add(b * stride));
            let aw = if F == Q8 { _mm256_sign_epi8(q, q) } else { q };
            for a in 0..A {
                let sx = if F == Q8 {
                    _mm256_sign_epi8(xq[a], q)
                } else {
                    xq[a]
                };
                let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
                let dot = if F == Q4 || F == Q5 {
                    _mm256_add_epi32(start[a], dot)
                } else {
                    dot
                };
                acc[a][r] = _mm256_fmadd_ps(
                    _mm256_set1_ps(wd * xd[a]),
                    _mm256_cvtepi32_ps(dot),
                    acc[a][r],
                );
                if F == Q41 {
                    mins[a][r] += wm * xs[a];
                }
            }
        }
    }
    sums(acc, mins)
}

/// Block `b` of an activation row: scale, s (Q8_1 only; 0 for Q8_0) and 32 signed quants.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn activation<const F: u8>(x: &[u8], b: usize) -> (f32, f32, __m256i) {
    let f = format_of(F);
    let p = x.as_ptr().add(b * f.act_bytes());
    let s = if F == Q41 { half_at(p.add(2)) } else { 0.0 };
    (
        half_at(p),
        s,
        _mm256_loadu_si256(p.add(f.act_quants()) as *const __m256i),
    )
}

/// The weight block at `p`: scale, minimum (Q4_1 only) and 32 quants, unsigned for Q4_0 and
/// Q4_1 (0..15) and Q5_0 (0..31), signed for Q8_0.
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn weights<const F: u8>(p: *const u8) -> (f32, f32, __m256i) {
    let d = half_at(p);
    if F == Q8 {
        return (d, 0.0, _mm256_loadu_si256(p.add(2) as *const __m256i));
    }
    // 16 bytes of nibbles: low nibbles are values 0..16, high nibbles 16..32.
    let at = [2, 4, 6, 0][F as usize];
    let raw = _mm_loadu_si128(p.add(at) as *const __m128i);
    let q = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw),
        _mm256_set1_epi8(0x0f),
    );
    match F {
        Q5 => (
            d,
            0.0,
            _mm256_or_si256(
                q,
                _mm256_and_si256(bits_to_bytes(p.add(2)), _mm256_set1_epi8(0x10)),
            ),
        ),
        Q41 => (d, half_at(p.add(2)), q),
        _ => (d, 0.0, q),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums<const R: usize, const A: usize>(
    acc: [[__m256; R]; A],
    mins: [[f32; R]; A],
) -> [[f32; R]; A] {
    let mut out = [[0f32; R]; A];
    for a in 0..A {
        for r in 0..R {
            out[a][r] = hsum(acc[a][r]) + mins[a][r];
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

/// The little-endian f16 at `p`, widened.
#[target_feature(enable = "f16c")]
#[inline]
unsafe fn half_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
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
    use super::super::tiles::reference::{activations, weights, FORMATS};
    use super::*;
    use crate::rng::SeededRng;

    /// The VNNI tile equals the AVX2 one (tiles.rs checks the AVX2 or VNNI tile, whichever this
    /// CPU runs, against the scalar definition).
    #[test]
    fn vnni_tiles_equal_avx2_tiles() {
        if !available() || !vnni() {
            return;
        }
        let kb = 28;
        let mut rng = SeededRng::new(3);
        for f in FORMATS {
            let ws: Vec<Vec<u8>> = (0..4).map(|_| weights(&mut rng, kb, f)).collect();
            let xs: Vec<Vec<u8>> = (0..4).map(|_| activations(&mut rng, kb, f)).collect();
            let w = [&ws[0][..], &ws[1][..], &ws[2][..], &ws[3][..]];
            let x = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
            let s = f.block_bytes();
            let (avx2, v) = unsafe {
                match f {
                    TileFormat::Q4_0 => (
                        tile_of::<4, 4, Q4>(w, s, x, kb),
                        tile_vnni::<4, 4, Q4>(w, s, x, kb),
                    ),
                    TileFormat::Q4_1 => (
                        tile_of::<4, 4, Q41>(w, s, x, kb),
                        tile_vnni::<4, 4, Q41>(w, s, x, kb),
                    ),
                    TileFormat::Q5_0 => (
                        tile_of::<4, 4, Q5>(w, s, x, kb),
                        tile_vnni::<4, 4, Q5>(w, s, x, kb),
                    ),
                    TileFormat::Q8_0 => (
                        tile_of::<4, 4, Q8>(w, s, x, kb),
                        tile_vnni::<4, 4, Q8>(w, s, x, kb),
                    ),
                }
            };
            for a in 0..4 {
                for r in 0..4 {
                    assert!(
                        (v[a][r] - avx2[a][r]).abs() <= 1e-5 * avx2[a][r].abs().max(1.0),
                        "{f:?} {a},{r}: {} vs {}",
                        v[a][r],
                        avx2[a][r]
                    );
                }
            }
        }
    }
}
