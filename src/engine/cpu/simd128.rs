//! wasm SIMD128 tiles (tiles.rs) for Q4_0, Q4_1, Q5_0 and Q8_0 weights against Q8_0 or Q8_1
//! activations. Each activation block is widened to i16 once per tile and each weight block once
//! per tile; `i32x4.dot_i16x8_s` (one `pmaddwd` or two NEON widening multiplies) does the
//! products. Per block the float steps are ggml's wasm ones (convert, multiply by the scale
//! product, add; Q4_1's min × s summed aside), so results match llama.cpp's wasm build.
//!
//! The relaxed build (`+relaxed-simd`) dots the 4- and 5-bit formats with
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s` instead: the unsigned nibbles (0..32, within the i7
//! operand's 0..128, where every engine agrees) against the activations, less the offset (8 or 16)
//! times the activations' sum. Its lanes sum four adjacent bytes where the plain build's sum
//! values 2j, 2j+1, 8+2j and 9+2j of each half, so both operands are reordered first (`in_lanes`):
//! each i32 lane then adds exactly the same integers, and the float steps, hence every logit and
//! token, are the plain build's. Q8_0's signed weights have no i7 operand and stay plain.

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
    #[cfg(target_feature = "relaxed-simd")]
    match format {
        TileFormat::Q4_0 => relaxed_tile_of::<R, A, Q4>(w, stride, x, kb),
        TileFormat::Q4_1 => relaxed_tile_of::<R, A, Q41>(w, stride, x, kb),
        TileFormat::Q5_0 => relaxed_tile_of::<R, A, Q5>(w, stride, x, kb),
        TileFormat::Q8_0 => tile_of::<R, A, Q8>(w, stride, x, kb),
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    match format {
        TileFormat::Q4_0 => tile_of::<R, A, Q4>(w, stride, x, kb),
        TileFormat::Q4_1 => tile_of::<R, A, Q41>(w, stride, x, kb),
        TileFormat::Q5_0 => tile_of::<R, A, Q5>(w, stride, x, kb),
        TileFormat::Q8_0 => tile_of::<R, A, Q8>(w, stride, x, kb),
    }
}

/// A half block (16 values) in the relaxed dot's order: lane j of
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` sums bytes 4j..4j+4, which then hold values 2j, 2j+1,
/// 8+2j and 9+2j, the values lane j of the plain build's `i32x4.dot_i16x8_s` pairs sum.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn in_lanes(v: v128) -> v128 {
    i8x16_shuffle::<0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15>(v, v)
}

/// The plain tile's sums and float steps with the relaxed dot (see the module note).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn relaxed_tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let f = format_of(F);
    // The weights' offset: Q4_0 stores value + 8, Q5_0 value + 16, Q4_1 keeps its minimum aside.
    let offset = match F {
        Q4 => 8,
        Q5 => 16,
        _ => 0,
    };
    let zero = i32x4_splat(0);
    let mut acc = [[f32x4_splat(0.0); R]; A];
    let mut mins = [[0f32; R]; A];
    for b in 0..kb {
        let mut xd = [0f32; A];
        let mut xs = [0f32; A];
        let mut xq = [[zero; 2]; A];
        let mut bias = [zero; A];
        for a in 0..A {
            let p = x[a].as_ptr().add(b * f.act_bytes());
            xd[a] = half_at(p);
            if F == Q41 {
                xs[a] = half_at(p.add(2));
            }
            let q = p.add(f.act_quants());
            xq[a] = [
                in_lanes(v128_load(q as *const v128)),
                in_lanes(v128_load(q.add(16) as *const v128)),
            ];
            if offset != 0 {
                let k = i8x16_splat(offset);
                bias[a] = i32x4_relaxed_dot_i8x16_i7x16_add(
                    xq[a][0],
                    k,
                    i32x4_relaxed_dot_i8x16_i7x16_add(xq[a][1], k, zero),
                );
            }
        }
        for r in 0..R {
            let p = w[r].as_ptr().add(b * stride);
            let wd = half_at(p);
            let (lo, hi) = unsigned_quants::<F>(p);
            let wm = if F == Q41 { half_at(p.add(2)) } else { 0.0 };
            for a in 0..A {
                let sum = i32x4_relaxed_dot_i8x16_i7x16_add(
                    xq[a][0],
                    lo,
                    i32x4_relaxed_dot_i8x16_i7x16_add(xq[a][1], hi, zero),
                );
                let dot = i32x4_sub(sum, bias[a]);
                add_block(&mut acc[a][r], dot, wd * xd[a]);
                if F == Q41 {
                    mins[a][r] += wm * xs[a];
                }
            }
        }
    }
    finish(acc, mins)
}

/// A 4- or 5-bit weight block's 32 stored (unsigned) values in `in_lanes` order: values 0..16 and
/// 16..32.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn unsigned_quants<const F: u8>(p: *const u8) -> (v128, v128) {
    let raw = v128_load(p.add([2, 4, 6, 0][F as usize]) as *const v128);
    if F != Q5 {
        let raw = in_lanes(raw);
        return (v128_and(raw, u8x16_splat(0x0f)), u8x16_shr(raw, 4));
    }
    let bits = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
    let (lo, hi) = (v128_and(raw, u8x16_splat(0x0f)), u8x16_shr(raw, 4));
    (
        in_lanes(v128_or(lo, fifth_bits(bits))),
        in_lanes(v128_or(hi, fifth_bits(bits >> 16))),
    )
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
                add_block(&mut acc[a][r], dot, wd * xd[a]);
                if F == Q41 {
                    mins[a][r] += wm * xs[a];
                }
            }
        }
    }
    finish(acc, mins)
}

/// One block's step, as ggml's wasm build takes it: the integer sums converted, times the scale
/// product, added.
#[inline(always)]
fn add_block(acc: &mut v128, dot: v128, scale: f32) {
    *acc = f32x4_add(
        *acc,
        f32x4_mul(f32x4_convert_i32x4(dot), f32x4_splat(scale)),
    );
}

/// Each accumulator's four lanes summed in order, plus Q4_1's minimum terms.
#[inline(always)]
fn finish<const R: usize, const A: usize>(
    acc: [[v128; R]; A],
    mins: [[f32; R]; A],
) -> [[f32; R]; A] {
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
            (
                i8x16_sub(v128_or(lo, fifth_bits(bits)), i8x16_splat(16)),
                i8x16_sub(v128_or(hi, fifth_bits(bits >> 16)), i8x16_splat(16)),
            )
        }
        _ => (lo, hi),
    }
}

/// 0x10 in byte i where the fifth bit of value i (bit i of `word`'s low 16 bits) is set.
#[inline(always)]
fn fifth_bits(word: u32) -> v128 {
    let (b0, b1) = (word as u8, (word >> 8) as u8);
    let spread = u8x16(
        b0, b0, b0, b0, b0, b0, b0, b0, b1, b1, b1, b1, b1, b1, b1, b1,
    );
    let mask = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    v128_and(i8x16_eq(v128_and(spread, mask), mask), u8x16_splat(0x10))
}

/// The little-endian f16 at `p`, widened (wasm has no f16 conversion instruction).
#[inline(always)]
unsafe fn half_at(p: *const u8) -> f32 {
    super::tiles::widen_f16(u16::from_le_bytes([*p, *p.add(1)]))
}

#[cfg(all(test, target_feature = "relaxed-simd"))]
mod tests {
    use super::super::tiles::reference::{activations, weights};
    use super::*;
    use crate::rng::SeededRng;

    type Tile<const A: usize> = [[f32; DECODE_ROWS]; A];

    /// The relaxed tile and the plain one on the same blocks.
    unsafe fn both<const A: usize>(
        f: TileFormat,
        w: [&[u8]; DECODE_ROWS],
        stride: usize,
        x: [&[u8]; A],
        kb: usize,
    ) -> (Tile<A>, Tile<A>) {
        match f {
            TileFormat::Q4_0 => (
                relaxed_tile_of::<DECODE_ROWS, A, Q4>(w, stride, x, kb),
                tile_of::<DECODE_ROWS, A, Q4>(w, stride, x, kb),
            ),
            TileFormat::Q4_1 => (
                relaxed_tile_of::<DECODE_ROWS, A, Q41>(w, stride, x, kb),
                tile_of::<DECODE_ROWS, A, Q41>(w, stride, x, kb),
            ),
            _ => (
                relaxed_tile_of::<DECODE_ROWS, A, Q5>(w, stride, x, kb),
                tile_of::<DECODE_ROWS, A, Q5>(w, stride, x, kb),
            ),
        }
    }

    /// The relaxed tiles give the plain tiles' floats bit for bit, on random blocks and on the
    /// extremes (every stored value 0 or at its maximum, activations ±127 and −128), for the
    /// decode and prefill shapes.
    #[wasm_bindgen_test::wasm_bindgen_test]
    fn relaxed_tiles_equal_the_plain_ones_bit_for_bit() {
        let kb = 28;
        let mut rng = SeededRng::new(11);
        for f in [TileFormat::Q4_0, TileFormat::Q4_1, TileFormat::Q5_0] {
            let mut ws: Vec<Vec<u8>> = (0..DECODE_ROWS).map(|_| weights(&mut rng, kb, f)).collect();
            let mut xs: Vec<Vec<u8>> = (0..4).map(|_| activations(&mut rng, kb, f)).collect();
            let (wb, xb) = (f.block_bytes(), f.act_bytes());
            // Where the quants start, after the scale (and Q4_1's minimum), in both blocks.
            let scale_bytes = if f == TileFormat::Q4_1 { 4 } else { 2 };
            // Row 0 block 0: every value at its maximum; row 1 block 0: every value zero.
            ws[0][scale_bytes..wb].fill(0xff);
            ws[1][scale_bytes..wb].fill(0);
            // Activation 0 block 0 at +127, activation 1 block 0 at −128, 2 alternating.
            xs[0][scale_bytes..xb].fill(127);
            xs[1][scale_bytes..xb].fill(0x80);
            for (i, q) in xs[2][scale_bytes..xb].iter_mut().enumerate() {
                *q = if i % 2 == 0 { 127 } else { 0x81 };
            }
            let w: [&[u8]; DECODE_ROWS] = std::array::from_fn(|r| ws[r].as_slice());
            let bits = |t: &[[f32; DECODE_ROWS]]| -> Vec<u32> {
                t.iter().flatten().map(|v| v.to_bits()).collect()
            };
            let x1 = [xs[0].as_slice()];
            let x4: [&[u8]; 4] = std::array::from_fn(|a| xs[a].as_slice());
            let (relaxed, plain) = unsafe { both(f, w, wb, x4, kb) };
            assert_eq!(bits(&relaxed), bits(&plain), "{f:?} 4 activation rows");
            let (relaxed, plain) = unsafe { both(f, w, wb, x1, kb) };
            assert_eq!(bits(&relaxed), bits(&plain), "{f:?} 1 activation row");
        }
    }
}
