//! wasm SIMD128 tiles (tiles.rs) for Q4_0, Q4_1, Q5_0 and Q8_0 weights against Q8_0 or Q8_1
//! activations. Per block, each (weight row, activation row) pair's 32 products are summed as
//! exact integers, the R rows' sums gathered into one vector's lanes, and the float steps are the
//! scalar definition's (`tiles::reference::dot`): the scale product times the sum, added to one
//! of the row's eight running sums in turn (then Q4_1's minimum × s), which are added pairwise at
//! the end. So a wasm tile equals the scalar definition bit for bit, in every build; and an
//! accumulator holds four rows rather than four partial sums of one.
//!
//! The plain build multiplies with `i32x4.dot_i16x8_s` (one `pmaddwd` on x86) on values widened
//! to i16. The relaxed build (`+relaxed-simd`) dots the 4- and 5-bit formats with
//! `i16x8.relaxed_dot_i8x16_i7x16_s` (one `pmaddubsw`) on the stored unsigned values (0..32,
//! within the i7 operand's 0..128, where every engine agrees; no sum of four products reaches
//! i16's limits), then subtracts the offset (8 or 16) times the activations' sum. Sums of the same
//! products in any order are the same integers, so both builds give the same floats. Q8_0's
//! signed weights have no i7 operand and take the plain path in both.
//!
//! The relaxed build keeps Q4_0's and Q4_1's rows in quads (quads.rs).

use core::arch::wasm32::*;

#[cfg(target_feature = "relaxed-simd")]
use super::quads::{self, rows_of};
use super::tiles::{format_of, TileFormat, Q4, Q41, Q5, Q8, SUMS};

/// Weight rows per decode pass: two vectors' lanes, which share each activation load (two quads
/// in the relaxed build; two 4-row tiles, one after the other, elsewhere).
pub(super) const DECODE_ROWS: usize = 8;

/// Whether Q4_0 and Q4_1 weights are kept as quads (tiles.rs `quads`): in the relaxed build.
pub(super) const QUADS: bool = cfg!(target_feature = "relaxed-simd");

/// What a tile reads of an activation block besides its quants, found once per product rather
/// than once per four weight rows: the scale, widened; and Q4_0's and Q5_0's offset (8, 16) times
/// the quants' sum (an i32), or Q4_1's s widened (f32 bits).
#[derive(Clone, Copy)]
pub(super) struct ActBlock {
    pub(super) d: f32,
    pub(super) extra: u32,
}

/// One `ActBlock` per activation block of the `m` rows of `kb` blocks in `x`.
pub(super) fn act_blocks(format: TileFormat, x: &[u8], m: usize, kb: usize) -> Vec<ActBlock> {
    let half = |b: &[u8]| super::tiles::widen_f16(u16::from_le_bytes([b[0], b[1]]));
    x[..m * kb * format.act_bytes()]
        .chunks_exact(format.act_bytes())
        .map(|b| {
            let quants = || {
                b[format.act_quants()..]
                    .iter()
                    .map(|&q| q as i8 as i32)
                    .sum::<i32>()
            };
            let extra = match format {
                TileFormat::Q4_0 => (8 * quants()) as u32,
                TileFormat::Q5_0 => (16 * quants()) as u32,
                TileFormat::Q4_1 => half(&b[2..]).to_bits(),
                TileFormat::Q8_0 => 0,
            };
            ActBlock { d: half(b), extra }
        })
        .collect()
}

/// out[a][r] = dot(weight row r, activation row a) for R (1, 4 or 8) weight rows and A activation
/// rows. `w[r]` starts at row r's first block, its next ones `stride` bytes apart (interleaved
/// rows, tiles.rs); `x[a]` is a whole activation row; `kb` blocks each.
///
/// # Safety
/// Every slice must hold `kb` blocks of its format at its spacing.
#[inline]
pub(super) unsafe fn tile<const R: usize, const A: usize>(
    format: TileFormat,
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    s: [&[ActBlock]; A],
    kb: usize,
) -> [[f32; R]; A] {
    const { assert!(R == 1 || R == 4 || R == 8) };
    #[cfg(target_feature = "relaxed-simd")]
    match format {
        // 4-row runs are quads (tiles of 4 and 8 rows start at a multiple of 4 in their group).
        TileFormat::Q4_0 if R == 4 => rows_of(quads::tile_of::<1, A, Q4>([w[0]], stride, x, s, kb)),
        TileFormat::Q4_1 if R == 4 => {
            rows_of(quads::tile_of::<1, A, Q41>([w[0]], stride, x, s, kb))
        }
        TileFormat::Q4_0 if R == 8 => rows_of(quads::tile_of::<2, A, Q4>(
            [w[0], w[4 % R]],
            stride,
            x,
            s,
            kb,
        )),
        TileFormat::Q4_1 if R == 8 => rows_of(quads::tile_of::<2, A, Q41>(
            [w[0], w[4 % R]],
            stride,
            x,
            s,
            kb,
        )),
        _ if R == 8 => halves(format, w, stride, x, s, kb),
        TileFormat::Q4_0 => relaxed_tile_of::<R, A, Q4>(w, stride, x, s, kb),
        TileFormat::Q4_1 => relaxed_tile_of::<R, A, Q41>(w, stride, x, s, kb),
        TileFormat::Q5_0 => relaxed_tile_of::<R, A, Q5>(w, stride, x, s, kb),
        TileFormat::Q8_0 => tile_of::<R, A, Q8>(w, stride, x, s, kb),
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    match format {
        _ if R == 8 => halves(format, w, stride, x, s, kb),
        TileFormat::Q4_0 => tile_of::<R, A, Q4>(w, stride, x, s, kb),
        TileFormat::Q4_1 => tile_of::<R, A, Q41>(w, stride, x, s, kb),
        TileFormat::Q5_0 => tile_of::<R, A, Q5>(w, stride, x, s, kb),
        TileFormat::Q8_0 => tile_of::<R, A, Q8>(w, stride, x, s, kb),
    }
}

/// The tile with the relaxed i8 dot (see the module note).
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn relaxed_tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    s: [&[ActBlock]; A],
    kb: usize,
) -> [[f32; R]; A] {
    // R = 8 is instantiated by `tile` but runs as two 4-row tiles (`halves`).
    debug_assert!(R == 1 || R == 4);
    let f = format_of(F);
    let mut acc = [[f32x4_splat(0.0); A]; SUMS];
    // `b` also places the weight and activation blocks.
    #[allow(clippy::needless_range_loop)]
    for b in 0..kb {
        let at = b * stride;
        let wq: [[v128; 2]; R] =
            std::array::from_fn(|r| unsigned_quants::<F>(w[r].as_ptr().add(at)));
        let (wd, wm) = scales::<R, F>(&w, at);
        for (a, acc) in acc[b % SUMS].iter_mut().enumerate() {
            let p = x[a].as_ptr().add(b * f.act_bytes());
            let q = p.add(f.act_quants());
            let xq = [
                v128_load(q as *const v128),
                v128_load(q.add(16) as *const v128),
            ];
            let mut sums = totals(std::array::from_fn::<_, R, _>(|r| relaxed_dot(xq, wq[r])));
            let side = s[a][b];
            if F != Q41 {
                // Q4_0 stores value + 8 and Q5_0 value + 16: less offset × Σx.
                sums = i32x4_sub(sums, i32x4_splat(side.extra as i32));
            }
            add_block::<F>(acc, sums, wd, wm, side);
        }
    }
    finish(acc)
}

/// Multiply-adds per second of this build's i8 dot at its best: independent chains of the dot
/// and the add a tile needs at least per 16 bytes of quants (relaxed: `pmaddubsw`, 16 products
/// into i16; plain: `pmaddwd` on widened values, 8 into i32), on values in registers, nothing
/// loaded, unpacked or scaled: the ceiling no wasm tile of this build passes on this CPU.
pub(super) fn peak_macs_per_s(min_ms: f64) -> f64 {
    const CHAINS: usize = 12;
    const STEPS: usize = 1 << 16;
    #[inline(never)]
    fn run(seed: v128) -> v128 {
        let w = u8x16_splat(3);
        let mut acc = [seed; CHAINS];
        for _ in 0..STEPS {
            for a in acc.iter_mut() {
                #[cfg(target_feature = "relaxed-simd")]
                {
                    *a = i16x8_add(*a, i16x8_relaxed_dot_i8x16_i7x16(*a, w));
                }
                #[cfg(not(target_feature = "relaxed-simd"))]
                {
                    *a = i32x4_add(*a, i32x4_dot_i16x8(*a, w));
                }
            }
        }
        acc.into_iter().fold(seed, |a, b| v128_xor(a, b))
    }
    let per_dot = if cfg!(target_feature = "relaxed-simd") {
        16.0
    } else {
        8.0
    };
    let mut sink = i8x16_splat(1);
    let mut runs = 0usize;
    let t = web_time::Instant::now();
    while t.elapsed().as_secs_f64() < 0.05 {
        sink = run(sink);
    }
    let t = web_time::Instant::now();
    while runs < 3 || t.elapsed().as_secs_f64() * 1000.0 < min_ms {
        sink = run(sink);
        runs += 1;
    }
    core::hint::black_box(sink);
    (runs * STEPS * CHAINS) as f64 * per_dot / t.elapsed().as_secs_f64()
}

/// An 8-row tile as two 4-row ones.
#[inline(always)]
unsafe fn halves<const R: usize, const A: usize>(
    format: TileFormat,
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    s: [&[ActBlock]; A],
    kb: usize,
) -> [[f32; R]; A] {
    let first = tile::<4, A>(format, std::array::from_fn(|r| w[r % R]), stride, x, s, kb);
    let second = tile::<4, A>(
        format,
        std::array::from_fn(|r| w[(4 + r) % R]),
        stride,
        x,
        s,
        kb,
    );
    std::array::from_fn(|a| {
        std::array::from_fn(|r| if r < 4 { first[a][r] } else { second[a][r % 4] })
    })
}

/// The 32 products of an activation block's quants (signed) and a weight block's stored values
/// (0..32), summed into four i32 lanes.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
fn relaxed_dot(x: [v128; 2], w: [v128; 2]) -> v128 {
    i32x4_extadd_pairwise_i16x8(i16x8_add(
        i16x8_relaxed_dot_i8x16_i7x16(x[0], w[0]),
        i16x8_relaxed_dot_i8x16_i7x16(x[1], w[1]),
    ))
}

/// A 4- or 5-bit weight block's 32 stored (unsigned) values: values 0..16 and 16..32.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn unsigned_quants<const F: u8>(p: *const u8) -> [v128; 2] {
    let raw = v128_load(p.add([2, 4, 6, 0][F as usize]) as *const v128);
    let (lo, hi) = (v128_and(raw, u8x16_splat(0x0f)), u8x16_shr(raw, 4));
    if F != Q5 {
        return [lo, hi];
    }
    let bits = u32::from_le_bytes([*p.add(2), *p.add(3), *p.add(4), *p.add(5)]);
    [
        v128_or(lo, fifth_bits(bits)),
        v128_or(hi, fifth_bits(bits >> 16)),
    ]
}

#[inline(always)]
unsafe fn tile_of<const R: usize, const A: usize, const F: u8>(
    w: [&[u8]; R],
    stride: usize,
    x: [&[u8]; A],
    s: [&[ActBlock]; A],
    kb: usize,
) -> [[f32; R]; A] {
    // R = 8 is instantiated by `tile` but runs as two 4-row tiles (`halves`).
    debug_assert!(R == 1 || R == 4);
    let f = format_of(F);
    let mut acc = [[f32x4_splat(0.0); A]; SUMS];
    // `b` also places the weight and activation blocks.
    #[allow(clippy::needless_range_loop)]
    for b in 0..kb {
        let at = b * stride;
        let wq: [[v128; 4]; R] = std::array::from_fn(|r| {
            let (lo, hi) = quants::<F>(w[r].as_ptr().add(at));
            [
                i16x8_extend_low_i8x16(lo),
                i16x8_extend_high_i8x16(lo),
                i16x8_extend_low_i8x16(hi),
                i16x8_extend_high_i8x16(hi),
            ]
        });
        let (wd, wm) = scales::<R, F>(&w, at);
        for (a, acc) in acc[b % SUMS].iter_mut().enumerate() {
            let p = x[a].as_ptr().add(b * f.act_bytes());
            let q = p.add(f.act_quants()) as *const i8;
            let xq = [
                i16x8_load_extend_i8x8(q),
                i16x8_load_extend_i8x8(q.add(8)),
                i16x8_load_extend_i8x8(q.add(16)),
                i16x8_load_extend_i8x8(q.add(24)),
            ];
            let dots: [v128; R] = std::array::from_fn(|r| {
                let wq = &wq[r];
                i32x4_add(
                    i32x4_add(i32x4_dot_i16x8(wq[0], xq[0]), i32x4_dot_i16x8(wq[1], xq[1])),
                    i32x4_add(i32x4_dot_i16x8(wq[2], xq[2]), i32x4_dot_i16x8(wq[3], xq[3])),
                )
            });
            add_block::<F>(acc, totals(dots), wd, wm, s[a][b]);
        }
    }
    finish(acc)
}

/// Each dot's four lanes summed (exact): lane r holds row r's sum when R = 4; every lane holds
/// the one row's when R = 1.
#[inline(always)]
fn totals<const R: usize>(d: [v128; R]) -> v128 {
    if R == 4 {
        let (d0, d1, d2, d3) = (d[0], d[1 % R], d[2 % R], d[3 % R]);
        let s01 = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(d0, d1),
            i32x4_shuffle::<2, 6, 3, 7>(d0, d1),
        );
        let s23 = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(d2, d3),
            i32x4_shuffle::<2, 6, 3, 7>(d2, d3),
        );
        return i32x4_add(
            i32x4_shuffle::<0, 1, 4, 5>(s01, s23),
            i32x4_shuffle::<2, 3, 6, 7>(s01, s23),
        );
    }
    let s = i32x4_add(d[0], i32x4_shuffle::<2, 3, 0, 1>(d[0], d[0]));
    i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s))
}

/// The R rows' f16 scales of the block at `at` as lanes, and Q4_1's minimums (else zeros).
#[inline(always)]
unsafe fn scales<const R: usize, const F: u8>(w: &[&[u8]; R], at: usize) -> (v128, v128) {
    let halves = |offset: usize| {
        let mut bits = [0u32; 4];
        for (r, row) in w.iter().enumerate() {
            let p = row.as_ptr().add(at + offset);
            bits[r] = u16::from_le_bytes([*p, *p.add(1)]) as u32;
        }
        widen_f16x4(u32x4(bits[0], bits[1], bits[2], bits[3]))
    };
    let minimums = if F == Q41 {
        halves(2)
    } else {
        f32x4_splat(0.0)
    };
    (halves(0), minimums)
}

/// `tiles::widen_f16` on four lanes: the same operations, so the same floats.
#[inline(always)]
pub(super) fn widen_f16x4(bits: v128) -> v128 {
    let magnitude = f32x4_mul(
        i32x4_shl(v128_and(bits, u32x4_splat(0x7fff)), 13),
        f32x4_splat(f32::from_bits(0x7780_0000)), // 2^112
    );
    v128_or(
        magnitude,
        i32x4_shl(v128_and(bits, u32x4_splat(0x8000)), 16),
    )
}

/// One block's float steps, as the scalar definition takes them: lane r's total plus (row r's
/// scale × the activation block's) × its sum, then for Q4_1 plus row r's minimum × the block's s.
#[inline(always)]
pub(super) fn add_block<const F: u8>(acc: &mut v128, sums: v128, wd: v128, wm: v128, x: ActBlock) {
    let scale = f32x4_mul(wd, f32x4_splat(x.d));
    *acc = f32x4_add(*acc, f32x4_mul(scale, f32x4_convert_i32x4(sums)));
    if F == Q41 {
        let s = f32::from_bits(x.extra);
        *acc = f32x4_add(*acc, f32x4_mul(wm, f32x4_splat(s)));
    }
}

/// The running sums added pairwise, as the scalar definition does; lane r of activation row a's
/// is row r's dot with it.
#[inline(always)]
fn finish<const R: usize, const A: usize>(acc: [[v128; A]; SUMS]) -> [[f32; R]; A] {
    std::array::from_fn(|a| {
        let v = super::tiles::pairwise(std::array::from_fn(|s| acc[s][a]), |x, y| f32x4_add(x, y));
        let lanes: [f32; 4] = unsafe { core::mem::transmute(v) };
        std::array::from_fn(|r| lanes[r])
    })
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

#[cfg(all(test, target_feature = "relaxed-simd"))]
mod tests {
    use super::super::tiles::reference::{activations, weights};
    use super::*;
    use crate::rng::SeededRng;

    /// Rows of the tiles compared: one quad.
    const ROWS: usize = 4;
    type Tile<const A: usize> = [[f32; ROWS]; A];

    /// A one-quad tile's rows; a two-quad tile over the same quad twice must give them in both.
    fn quad_rows<const Q: usize, const A: usize>(t: [[[f32; 4]; Q]; A]) -> Tile<A> {
        for q in 1..Q {
            let bits = |q: usize| {
                t.iter()
                    .flat_map(|a| a[q].map(f32::to_bits))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(q), bits(0), "quad {q} of {Q}");
        }
        t.map(|a| a[0])
    }

    /// The relaxed tiles and the plain one on the same blocks: the row-per-vector tile, then
    /// (Q4_0, Q4_1) the quad tiles on the rows made quads (one quad, and the same quad twice as
    /// an 8-row decode tile), else the row-per-vector one again.
    unsafe fn both<const A: usize>(
        f: TileFormat,
        w: [&[u8]; ROWS],
        stride: usize,
        x: [&[u8]; A],
        kb: usize,
    ) -> (Tile<A>, Tile<A>, Tile<A>) {
        let sides: Vec<Vec<ActBlock>> = x.iter().map(|x| act_blocks(f, x, 1, kb)).collect();
        let s: [&[ActBlock]; A] = std::array::from_fn(|a| sides[a].as_slice());
        let bb = f.block_bytes();
        let mut quads = vec![0u8; 4 * bb * kb];
        for (b, quad) in quads.chunks_exact_mut(4 * bb).enumerate() {
            let block = |r: usize| &w[r][b * stride..b * stride + bb];
            super::super::tiles::to_quad([block(0), block(1), block(2), block(3)], quad);
        }
        match f {
            TileFormat::Q4_0 => three::<A, Q4>(w, stride, x, s, kb, &quads),
            TileFormat::Q4_1 => three::<A, Q41>(w, stride, x, s, kb, &quads),
            _ => {
                let relaxed = relaxed_tile_of::<ROWS, A, Q5>(w, stride, x, s, kb);
                (
                    relaxed,
                    tile_of::<ROWS, A, Q5>(w, stride, x, s, kb),
                    relaxed,
                )
            }
        }
    }

    /// For a format kept in quads: the row-per-vector relaxed tile, the plain one, and the quad
    /// tiles on `quads`, the same rows (the 8-row shape checked against the 4-row one).
    unsafe fn three<const A: usize, const F: u8>(
        w: [&[u8]; ROWS],
        stride: usize,
        x: [&[u8]; A],
        s: [&[ActBlock]; A],
        kb: usize,
        quads: &[u8],
    ) -> (Tile<A>, Tile<A>, Tile<A>) {
        let qs = 4 * format_of(F).block_bytes();
        quad_rows(quads::tile_of::<2, A, F>([quads, quads], qs, x, s, kb));
        (
            relaxed_tile_of::<ROWS, A, F>(w, stride, x, s, kb),
            tile_of::<ROWS, A, F>(w, stride, x, s, kb),
            quad_rows(quads::tile_of::<1, A, F>([quads], qs, x, s, kb)),
        )
    }

    /// The relaxed tiles (row per vector, and quads) give the plain tiles' floats bit for bit, on
    /// random blocks and on the extremes (every stored value 0 or at its maximum, activations
    /// ±127 and −128), for the decode and prefill shapes.
    #[wasm_bindgen_test::wasm_bindgen_test]
    fn relaxed_tiles_equal_the_plain_ones_bit_for_bit() {
        let kb = 28;
        let mut rng = SeededRng::new(11);
        for f in [TileFormat::Q4_0, TileFormat::Q4_1, TileFormat::Q5_0] {
            let mut ws: Vec<Vec<u8>> = (0..ROWS).map(|_| weights(&mut rng, kb, f)).collect();
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
            let w: [&[u8]; ROWS] = std::array::from_fn(|r| ws[r].as_slice());
            let bits = |t: &[[f32; ROWS]]| -> Vec<u32> {
                t.iter().flatten().map(|v| v.to_bits()).collect()
            };
            let x1 = [xs[0].as_slice()];
            let x4: [&[u8]; 4] = std::array::from_fn(|a| xs[a].as_slice());
            let (relaxed, plain, quad) = unsafe { both(f, w, wb, x4, kb) };
            assert_eq!(bits(&relaxed), bits(&plain), "{f:?} 4 activation rows");
            assert_eq!(bits(&quad), bits(&plain), "{f:?} quads, 4 activation rows");
            let (relaxed, plain, quad) = unsafe { both(f, w, wb, x1, kb) };
            assert_eq!(bits(&relaxed), bits(&plain), "{f:?} 1 activation row");
            assert_eq!(bits(&quad), bits(&plain), "{f:?} quads, 1 activation row");
        }
    }
}
