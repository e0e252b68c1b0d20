//! wasm SIMD128 tiles (tiles.rs) for Q4_0, Q4_1, Q5_0 and Q8_0 weights against Q8_0 or Q8_1
//! activations. Each activation block is widened to i16 once per tile and each weight block once
//! per tile; `i32x4.dot_i16x8_s` (one `pmaddwd` or two NEON widening multiplies) does the
//! products. Per block the float steps are ggml's wasm ones (convert, multiply by the scale
//! product, add; Q4_1's min × s summed aside), so results match llama.cpp's wasm build.

use core::arch::wasm32::*;

use super::tiles::{format_of, TileFormat, Q4, Q41, Q5, Q8};

/// Weight rows per decode pass: four accumulators, the activation block's four i16 vectors and
/// one weight block's four stay within the 16 registers V8 has on x86-64.
pub(super) const DECODE_ROWS: usize = 4;

/// out[a][r] = dot(weight row r, activation row a) for R weight rows and A activation rows.
/// `w[r]` starts at row r's first block, its next ones `stride` bytes apart (interleaved rows,
/// tiles.rs); `x[a]` is a whole activation row; `kb` blocks each.
///
/// # Safety
/// Every slice must hold `kb` blocks of its format at its spacing.
#[inline]
pub(super) unsafe fn tile<const R: usize, const A: usize>(
    format: TileFormat,
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    match format {
        TileFormat::Q4_0 => tile_of::<R, A, Q4>(w, stride, x, kb),
        TileFormat::Q4_1 => tile_of::<R, A, Q41>(w, stride, x, kb),
        TileFormat::Q5_0 => tile_of::<R, A, Q5>(w, stride, x, kb),
        TileFormat::Q8_0 => tile_of::<R, A, Q8>(w, stride, x, kb),
    }
}

#[inline(always)]
unsafe fn tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let f = format_of(F);
    let mut acc = [[f32x4_splat(0.0); R]; A];
    let mut mins = [[0f32; R]; A];
    for b in 0..kb {
        let mut xd = [0f32; A];
        let mut xs = [0f32; A];
        let mut xq = [[i16x8_splat(0); 4]; A];
        for a in 0..A {
            let p = x[a].as_ptr().add(b * f.act_bytes());
            xd[a] = half_at(p);
            if F == Q41 {
                xs[a] = half_at(p.add(2));
            }
            let q = p.add(f.act_quants()) as *const i8;
            xq[a] = [
                i16x8_load_extend_i8x8(q),
                i16x8_load_extend_i8x8(q.add(8)),
                i16x8_load_extend_i8x8(q.add(16)),
                i16x8_load_extend_i8x8(q.add(24)),
            ];
        }
        for r in 0..R {
            let p = w[r].as_ptr().add(b * stride);
            let wd = half_at(p);
            let (lo, hi) = quants::<F>(p);
            let wq = [
                i16x8_extend_low_i8x16(lo),
                i16x8_extend_high_i8x16(lo),
                i16x8_extend_low_i8x16(hi),
                i16x8_extend_high_i8x16(hi),
            ];
            let wm = if F == Q41 { half_at(p.add(2)) } else { 0.0 };
            for a in 0..A {
                let dot = i32x4_add(
                    i32x4_add(
                        i32x4_dot_i16x8(wq[0], xq[a][0]),
                        i32x4_dot_i16x8(wq[1], xq[a][1]),
                    ),
                    i32x4_add(
                        i32x4_dot_i16x8(wq[2], xq[a][2]),
                        i32x4_dot_i16x8(wq[3], xq[a][3]),
                    ),
                );
                acc[a][r] = f32x4_add(
                    acc[a][r],
                    f32x4_mul(f32x4_convert_i32x4(dot), f32x4_splat(wd * xd[a])),
                );
                if F == Q41 {
                    mins[a][r] += wm * xs[a];
                }
            }
        }
    }
    let mut out = [[0f32; R]; A];
    for a in 0..A {
        for r in 0..R {
            let v = acc[a][r];
            out[a][r] = f32x4_extract_lane::<0>(v)
                + f32x4_extract_lane::<1>(v)
                + f32x4_extract_lane::<2>(v)
                + f32x4_extract_lane::<3>(v)
                + mins[a][r];
        }
    }
    out
}

/// A weight block's 32 quants as signed bytes: values 0..16 and 16..32.
#[inline(always)]
unsafe fn quants<const F: u8>(p: *const u8) -> (v128, v128) {
    if F == Q8 {
        return (
            v128_load(p.add(2) as *const v128),
            v128_load(p.add(18) as *const v128),
        );
    }
    let raw = v128_load(p.add([2, 4, 6, 0][F as usize]) as *const v128);
    let (lo, hi) = (v128_and(raw, u8x16_splat(0x0f)), u8x16_shr(raw, 4));
    match F {
        Q4 => (i8x16_sub(lo, i8x16_splat(8)), i8x16_sub(hi, i8x16_splat(8))),
        Q5 => {
            // The fifth bits, one per value: bit i of the little-endian u32 is value i's.
            let bits = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
            let high = |word: u32| {
                let spread = u8x16(
                    word as u8,
                    word as u8,
                    word as u8,
                    word as u8,
                    word as u8,
                    word as u8,
                    word as u8,
                    word as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                    (word >> 8) as u8,
                );
                let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
                // 0x10 where the bit is set.
                v128_and(i8x16_eq(v128_and(spread, mask), mask), u8x16_splat(0x10))
            };
            (
                i8x16_sub(v128_or(lo, high(bits)), i8x16_splat(16)),
                i8x16_sub(v128_or(hi, high(bits >> 16)), i8x16_splat(16)),
            )
        }
        _ => (lo, hi),
    }
}

/// The little-endian f16 at `p`, widened (wasm has no f16 conversion instruction).
#[inline(always)]
unsafe fn half_at(p: *const u8) -> f32 {
    super::tiles::widen_f16(u16::from_le_bytes([*p, *p.add(1)]))
}
