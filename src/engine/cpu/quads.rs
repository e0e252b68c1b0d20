//! The relaxed build's tile for Q4_0 and Q4_1 (simd128.rs), which keeps their 4-row runs as
//! quads (tiles.rs `to_quad`): 16 bytes hold 4 quants of each of 4 rows, so one i8 dot against 4
//! activation quants repeated 4 times leaves each row's sums in its own lanes. A block's 8 dots are added as i16 (each lane at most
//! 8 × 2 × 15 × 128 = 30720) and widened once, where the row-per-vector tile gathers four
//! vectors' lanes with six shuffles and six adds per activation row; the four scales come in one
//! 8-byte load.

use core::arch::wasm32::*;

use super::simd128::{add_block, widen_f16x4, ActBlock};
use super::tiles::{format_of, Q4, Q41, SUMS};

/// Rows in the caller's shape: `t[a][q]` holds rows 4q..4q+4 (R = 4Q where it is called).
#[inline(always)]
pub(super) fn rows_of<const Q: usize, const R: usize, const A: usize>(
    t: [[[f32; 4]; Q]; A],
) -> [[f32; R]; A] {
    std::array::from_fn(|a| std::array::from_fn(|r| t[a][(r / 4) % Q][r % 4]))
}

/// The tile over Q quads of 4 rows each (see the module note), which share each activation
/// load: `w[q]` starts at quad q's block 0, the next block's `stride` bytes on.
#[inline(always)]
pub(super) unsafe fn tile_of<const Q: usize, const A: usize, const F: u8>(
    w: [&[u8]; Q],
    stride: usize,
    x: [&[u8]; A],
    s: [&[ActBlock]; A],
    kb: usize,
) -> [[[f32; 4]; Q]; A] {
    const { assert!(F == Q4 || F == Q41) };
    let f = format_of(F);
    let head = 4 * (f.block_bytes() - 16);
    let halves = |p: *const u8| widen_f16x4(u32x4_extend_low_u16x8(v128_load64_zero(p as _)));
    let mut acc = [[[f32x4_splat(0.0); Q]; A]; SUMS];
    #[allow(clippy::needless_range_loop)]
    for b in 0..kb {
        let p: [*const u8; Q] = std::array::from_fn(|i| w[i].as_ptr().add(b * stride));
        let wd = p.map(halves);
        let wm = p.map(|p| match F {
            Q41 => halves(p.add(8)),
            _ => f32x4_splat(0.0),
        });
        // Values 4k..4k+4 (low nibbles) and 16+4k.. (high) of each row: a 16-bit shift and the
        // low-nibble mask, as engines have no 8-bit shift and build one from these plus a mask
        // made on the spot.
        let nibbles = |i: usize, k: usize| {
            let raw = v128_load(p[i].add(head + 16 * k) as _);
            let mask = u8x16_splat(0x0f);
            (v128_and(raw, mask), v128_and(u16x8_shr(raw, 4), mask))
        };
        // Several activation rows share one unpacking; a single row unpacks as it goes, which
        // keeps fewer vectors live.
        let zero = i16x8_splat(0);
        let shared: [[(v128, v128); 4]; Q] = match A {
            1 => [[(zero, zero); 4]; Q],
            _ => std::array::from_fn(|i| std::array::from_fn(|k| nibbles(i, k))),
        };
        for (a, acc) in acc[b % SUMS].iter_mut().enumerate() {
            let q = x[a].as_ptr().add(b * f.act_bytes() + f.act_quants());
            let mut d16 = [i16x8_splat(0); Q];
            for k in 0..4 {
                // The activation's same four quants in each row's lanes.
                let xl = v128_load32_splat(q.add(4 * k) as _);
                let xh = v128_load32_splat(q.add(16 + 4 * k) as _);
                for (i, d) in d16.iter_mut().enumerate() {
                    let (lo, hi) = if A == 1 { nibbles(i, k) } else { shared[i][k] };
                    *d = i16x8_add(
                        *d,
                        i16x8_add(
                            i16x8_relaxed_dot_i8x16_i7x16(xl, lo),
                            i16x8_relaxed_dot_i8x16_i7x16(xh, hi),
                        ),
                    );
                }
            }
            let side = s[a][b];
            for (i, acc) in acc.iter_mut().enumerate() {
                // Lane pairs added as a dot with ones: one pmaddwd, where engines widen pairs
                // with a constant made on the spot.
                let mut sums = i32x4_dot_i16x8(d16[i], i16x8_splat(1));
                if F == Q4 {
                    sums = i32x4_sub(sums, i32x4_splat(side.extra as i32));
                }
                add_block::<F>(acc, sums, wd[i], wm[i], side);
            }
        }
    }
    std::array::from_fn(|a| {
        std::array::from_fn(|i| {
            let v = super::tiles::pairwise(std::array::from_fn(|s| acc[s][a][i]), |x, y| {
                f32x4_add(x, y)
            });
            unsafe { core::mem::transmute::<v128, [f32; 4]>(v) }
        })
    })
}
