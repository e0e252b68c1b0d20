//! x86-64 dot products for the formats the benchmarks and most web models use (Q4_0, Q8_0
//! weights against Q8_0 activations): AVX2, and AVX512-VNNI where the CPU has it. A tile dots
//! up to four weight rows against up to four activation rows, so each unpacked weight block and
//! each activation block is loaded once per tile instead of once per dot product. Integer math
//! is exact; per block the float steps are ggml's (scale product, fused multiply-add), so results
//! match llama.cpp.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Bytes of one Q4_0 block (f16 scale, 16 bytes of nibbles) and one Q8_0 block (f16, 32 i8).
pub(super) const Q4_0_BYTES: usize = 18;
pub(super) const Q8_0_BYTES: usize = 34;

/// Whether this CPU has AVX512-VNNI (with 256-bit forms), used for the byte dot products.
fn vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU runs the kernels here.
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Weight format of a tile call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Q4_0,
    Q8_0,
}

/// out[a][r] = dot(weight row r, activation row a) for R weight rows and A activation rows.
/// `w[r]` and `x[a]` are whole rows of blocks as stored; `kb` blocks each.
///
/// # Safety
/// `available()` must be true; every slice must hold `kb` blocks of its format.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile<const R: usize, const A: usize>(
    format: Format,
    w: [&[u8]; R],
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    match (format, vnni()) {
        (Format::Q4_0, true) => tile_vnni::<R, A, true>(w, x, kb),
        (Format::Q8_0, true) => tile_vnni::<R, A, false>(w, x, kb),
        (Format::Q4_0, false) => tile_of::<R, A, true>(w, x, kb),
        (Format::Q8_0, false) => tile_of::<R, A, false>(w, x, kb),
    }
}

/// The tile with `vpdpbusd`: Q4_0 nibbles stay unsigned (0..15) and the -8 offset is folded in
/// as -8 times the sum of x, the accumulator's starting value; Q8_0 uses |w| and x with w's sign.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
#[inline]
unsafe fn tile_vnni<const R: usize, const A: usize, const Q4: bool>(w: [&[u8]; R], x: [&[u8]; A], kb: usize) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let low = _mm256_set1_epi8(0x0f);
    let eight = _mm256_set1_epi8(8);
    let zero = _mm256_setzero_si256();
    let wb = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
    for b in 0..kb {
        let mut xq = [zero; A];
        let mut xd = [0f32; A];
        let mut start = [zero; A];
        for a in 0..A {
            let p = x[a].as_ptr().add(b * Q8_0_BYTES);
            xd[a] = half_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
            xq[a] = _mm256_loadu_si256(p.add(2) as *const __m256i);
            if Q4 {
                start[a] = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, eight, xq[a]));
            }
        }
        for r in 0..R {
            let p = w[r].as_ptr().add(b * wb);
            let wd = half_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
            if Q4 {
                let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
                let q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
                for a in 0..A {
                    let dot = _mm256_dpbusd_epi32(start[a], q, xq[a]);
                    let d = _mm256_set1_ps(wd * xd[a]);
                    acc[a][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[a][r]);
                }
            } else {
                let q = _mm256_loadu_si256(p.add(2) as *const __m256i);
                let aq = _mm256_abs_epi8(q);
                for a in 0..A {
                    let dot = _mm256_dpbusd_epi32(zero, aq, _mm256_sign_epi8(xq[a], q));
                    let d = _mm256_set1_ps(wd * xd[a]);
                    acc[a][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[a][r]);
                }
            }
        }
    }
    let mut out = [[0f32; R]; A];
    for a in 0..A {
        for r in 0..R {
            out[a][r] = hsum(acc[a][r]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile_of<const R: usize, const A: usize, const Q4: bool>(w: [&[u8]; R], x: [&[u8]; A], kb: usize) -> [[f32; R]; A] {
    let mut acc = [[_mm256_setzero_ps(); R]; A];
    let low = _mm256_set1_epi8(0x0f);
    let eight = _mm256_set1_epi8(8);
    let ones = _mm256_set1_epi16(1);
    let wb = if Q4 { Q4_0_BYTES } else { Q8_0_BYTES };
    for b in 0..kb {
        let mut xq = [_mm256_setzero_si256(); A];
        let mut xd = [0f32; A];
        for a in 0..A {
            let p = x[a].as_ptr().add(b * Q8_0_BYTES);
            xd[a] = half_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
            xq[a] = _mm256_loadu_si256(p.add(2) as *const __m256i);
        }
        for r in 0..R {
            let p = w[r].as_ptr().add(b * wb);
            let wd = half_to_f32(u16::from_le_bytes([*p, *p.add(1)]));
            let q = if Q4 {
                // 16 bytes of nibbles: low nibbles are values 0..16, high nibbles 16..32.
                let raw = _mm_loadu_si128(p.add(2) as *const __m128i);
                let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
                _mm256_sub_epi8(_mm256_and_si256(both, low), eight)
            } else {
                _mm256_loadu_si256(p.add(2) as *const __m256i)
            };
            // Signed × signed bytes through maddubs: |w| × (x with w's sign).
            let aw = _mm256_sign_epi8(q, q);
            for a in 0..A {
                let sx = _mm256_sign_epi8(xq[a], q);
                let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
                let d = _mm256_set1_ps(wd * xd[a]);
                acc[a][r] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[a][r]);
            }
        }
    }
    let mut out = [[0f32; R]; A];
    for a in 0..A {
        for r in 0..R {
            out[a][r] = hsum(acc[a][r]);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "f16c")]
#[inline]
unsafe fn half_to_f32(bits: u16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// A row of `kb` blocks with random quants and scales near 0.01.
    fn row(rng: &mut SeededRng, kb: usize, q4: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..kb {
            out.extend_from_slice(&half::f16::from_f32(0.005 + rng.next_f32() * 0.01).to_le_bytes());
            let n = if q4 { 16 } else { 32 };
            // Q8_0 quants are in -127..=127 (the quantizer never makes -128).
            out.extend((0..n).map(|_| if q4 { rng.next_u64() as u8 } else { ((rng.next_u64() % 255) as i32 - 127) as i8 as u8 }));
        }
        out
    }

    /// The scalar definition: per block, scale product times the integer dot product.
    fn reference(w: &[u8], x: &[u8], kb: usize, q4: bool) -> f32 {
        let wb = if q4 { Q4_0_BYTES } else { Q8_0_BYTES };
        let mut sum = 0f32;
        for b in 0..kb {
            let (wp, xp) = (&w[b * wb..], &x[b * Q8_0_BYTES..]);
            let d = half::f16::from_le_bytes([wp[0], wp[1]]).to_f32() * half::f16::from_le_bytes([xp[0], xp[1]]).to_f32();
            let mut dot = 0i32;
            for i in 0..32 {
                let wq = if q4 {
                    let byte = wp[2 + i % 16];
                    (if i < 16 { byte & 15 } else { byte >> 4 }) as i32 - 8
                } else {
                    wp[2 + i] as i8 as i32
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
        for q4 in [true, false] {
            let ws: Vec<Vec<u8>> = (0..4).map(|_| row(&mut rng, kb, q4)).collect();
            let xs: Vec<Vec<u8>> = (0..4).map(|_| row(&mut rng, kb, false)).collect();
            let w = [&ws[0][..], &ws[1][..], &ws[2][..], &ws[3][..]];
            let x = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
            let avx2 = unsafe { if q4 { tile_of::<4, 4, true>(w, x, kb) } else { tile_of::<4, 4, false>(w, x, kb) } };
            for a in 0..4 {
                for r in 0..4 {
                    let want = reference(w[r], x[a], kb, q4);
                    assert!((avx2[a][r] - want).abs() <= 1e-4 * want.abs().max(1.0), "avx2 q4={q4} {a},{r}");
                }
            }
            if vnni() {
                let v = unsafe { if q4 { tile_vnni::<4, 4, true>(w, x, kb) } else { tile_vnni::<4, 4, false>(w, x, kb) } };
                for a in 0..4 {
                    for r in 0..4 {
                        assert!((v[a][r] - avx2[a][r]).abs() <= 1e-5 * avx2[a][r].abs().max(1.0), "vnni q4={q4} {a},{r}");
                    }
                }
            }
        }
    }
}
