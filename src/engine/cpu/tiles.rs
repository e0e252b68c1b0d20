//! Block dot-product tiles for the formats we dot ourselves (Q4_0, Q4_1, Q5_0 and Q8_0 weights
//! against 8-bit activations), on every target that has a kernel: x86-64 with AVX2 (x86.rs) and
//! wasm with SIMD128 (simd128.rs). A tile dots R weight rows against A activation rows, so each
//! unpacked weight block and each activation block is loaded once per tile rather than once per
//! dot product: decode (one activation row) takes many weight rows per pass, prefill 4 × 4.
//! Integer sums are exact. Per block the float steps are ggml's on x86-64 and the scalar
//! definition's on wasm (`reference::dot`, which wasm tiles equal bit for bit), so every target
//! lands on llama.cpp's products to float rounding.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd128 as arch;
#[cfg(target_arch = "x86_64")]
use super::x86 as arch;

/// Weight format of a tile call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum TileFormat {
    /// f16 scale, 16 bytes of nibbles (value − 8); Q8_0 activations.
    Q4_0,
    /// f16 scale, f16 minimum, 16 bytes of nibbles; Q8_1 activations (which carry d·Σq).
    Q4_1,
    /// f16 scale, 32 fifth bits, 16 bytes of nibbles (value − 16); Q8_0 activations.
    Q5_0,
    /// f16 scale, 32 i8; Q8_0 activations.
    Q8_0,
}

/// The formats as const-generic tags, for the target kernels' monomorphised tiles.
pub(super) const Q4: u8 = 0;
pub(super) const Q41: u8 = 1;
pub(super) const Q5: u8 = 2;
pub(super) const Q8: u8 = 3;

pub(super) const fn format_of(f: u8) -> TileFormat {
    [
        TileFormat::Q4_0,
        TileFormat::Q4_1,
        TileFormat::Q5_0,
        TileFormat::Q8_0,
    ][f as usize]
}

impl TileFormat {
    /// Bytes of one weight block.
    pub(super) const fn block_bytes(self) -> usize {
        match self {
            TileFormat::Q4_0 => 18,
            TileFormat::Q4_1 => 20,
            TileFormat::Q5_0 => 22,
            TileFormat::Q8_0 => 34,
        }
    }

    /// Bytes of one activation block: Q8_0 (f16 d, 32 i8) or Q8_1 (f16 d, f16 s, 32 i8).
    pub(super) const fn act_bytes(self) -> usize {
        match self {
            TileFormat::Q4_1 => 36,
            _ => 34,
        }
    }

    /// Where an activation block's 32 quants start.
    pub(super) const fn act_quants(self) -> usize {
        self.act_bytes() - 32
    }
}

/// The tile format for weights of `dtype`, when this target has a kernel for it.
pub(super) fn format_for(dtype: candle_core::quantized::GgmlDType) -> Option<TileFormat> {
    use candle_core::quantized::GgmlDType as D;
    #[cfg(target_arch = "x86_64")]
    if !arch::available() {
        return None;
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )))]
    return None;
    #[allow(unreachable_code)]
    match dtype {
        D::Q4_0 => Some(TileFormat::Q4_0),
        D::Q4_1 => Some(TileFormat::Q4_1),
        D::Q5_0 => Some(TileFormat::Q5_0),
        D::Q8_0 => Some(TileFormat::Q8_0),
        _ => None,
    }
}

/// An f16 scale widened in five branch-free operations: its exponent and mantissa shifted into
/// f32's places, then scaled by 2^112 to rebias the exponent (a multiply that also normalizes
/// subnormals exactly). Every finite f16 comes out as `half`'s conversion gives it; infinities
/// and NaNs, which no quantizer writes, come out finite. `half`'s portable conversion, which
/// wasm gets, branches on the exponent: this runs once per weight block.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
#[inline(always)]
pub(super) fn widen_f16(bits: u16) -> f32 {
    let bits = bits as u32;
    let magnitude = f32::from_bits((bits & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    f32::from_bits(magnitude.to_bits() | (bits & 0x8000) << 16)
}

/// Running sums per dot product in the scalar definition (`reference::dot`) and the wasm tiles:
/// block b goes to sum b mod 8, as llama.cpp's x86 code keeps 8 lanes. Measured on SmolLM2-135M
/// in Chromium against llama.cpp's logits (tests/web_real_model.rs; bar: KL 0.002814 and 8
/// top-1 misses): one running sum scored mean KL 0.002966 with 5 misses, four 0.002837 with 9,
/// eight 0.002665 with 8 (native x86: 0.002786).
pub(super) const SUMS: usize = 8;

/// `SUMS` running sums added pairwise: neighbours, then neighbouring pairs, and so on.
#[cfg_attr(not(any(test, target_arch = "wasm32")), allow(dead_code))]
#[inline(always)]
pub(super) fn pairwise<T: Copy>(mut sums: [T; SUMS], add: impl Fn(T, T) -> T) -> T {
    let mut n = SUMS;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            sums[i] = add(sums[2 * i], sums[2 * i + 1]);
        }
    }
    sums[0]
}

/// Rows per interleaved group: the weights of the formats we tile are stored as groups of 8 rows
/// whose blocks alternate (block b of row r at `(b·G + r)` blocks into the group), so a tile
/// over a group's rows reads one sequential stream instead of one stream per row. Measured on
/// the 0.5B-shaped Q4_0 head (AMD EPYC, 1 thread), rows one after another streamed 3.5 GB/s,
/// a tenth of the machine's 22 GB/s reads: eight 18-byte streams defeat the prefetchers.
pub(super) const GROUP: usize = 8;

/// Reorders `n` rows of `kb` blocks of `format`, in place, into interleaved groups (the last
/// group holds the `n % 8` leftover rows, if any), each run of 4 rows' blocks as a quad where the
/// target reads quads (`quads`). One group's bytes stay in the group's range, so this needs only
/// a group of scratch space, never a second copy of the matrix.
pub(super) fn interleave(bytes: &mut [u8], n: usize, kb: usize, format: TileFormat) {
    let bb = format.block_bytes();
    let rb = kb * bb;
    let mut scratch = vec![0u8; GROUP * rb];
    for g0 in (0..n).step_by(GROUP) {
        let g = GROUP.min(n - g0);
        let group = &mut bytes[g0 * rb..(g0 + g) * rb];
        scratch[..g * rb].copy_from_slice(group);
        let quad_rows = if quads(format) { g / 4 * 4 } else { 0 };
        for b in 0..kb {
            let block = |r: usize| &scratch[r * rb + b * bb..r * rb + (b + 1) * bb];
            for r in (0..quad_rows).step_by(4) {
                let at = (b * g + r) * bb;
                let rows = [block(r), block(r + 1), block(r + 2), block(r + 3)];
                to_quad(rows, &mut group[at..at + 4 * bb]);
            }
            for r in quad_rows..g {
                group[(b * g + r) * bb..(b * g + r + 1) * bb].copy_from_slice(block(r));
            }
        }
    }
}

/// Row `r` of an interleaved matrix of `n` rows into `out` (`kb` blocks), its blocks one after
/// another again.
pub(super) fn row_of(
    bytes: &[u8],
    n: usize,
    kb: usize,
    format: TileFormat,
    r: usize,
    out: &mut [u8],
) {
    let bb = format.block_bytes();
    let rb = kb * bb;
    let g0 = r / GROUP * GROUP;
    let g = GROUP.min(n - g0);
    let group = &bytes[g0 * rb..(g0 + g) * rb];
    let i = r - g0;
    let in_quad = quads(format) && i < g / 4 * 4;
    for (b, dst) in out.chunks_exact_mut(bb).enumerate() {
        if in_quad {
            let at = (b * g + i / 4 * 4) * bb;
            from_quad(&group[at..at + 4 * bb], i % 4, dst);
        } else {
            let at = (b * g + i) * bb;
            dst.copy_from_slice(&group[at..at + bb]);
        }
    }
}

/// Whether this target's tiles read 4-row runs of `format`'s blocks as quads: the relaxed wasm
/// build's Q4_0 and Q4_1 (simd128.rs), whose i8 dot then sums 4 values of each of 4 rows into
/// each row's own lanes, leaving no sums to gather across vectors.
fn quads(format: TileFormat) -> bool {
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    return arch::QUADS && matches!(format, TileFormat::Q4_0 | TileFormat::Q4_1);
    #[allow(unreachable_code)]
    {
        let _ = format;
        false
    }
}

/// Block b of 4 rows as one quad of the same bytes: the rows' f16 scales side by side (and after
/// them Q4_1's minimums), then the quants 4 bytes at a time, bytes 4k..4k+4 of rows 0..3 making
/// the quad's k-th 16 bytes. `rows` are 4 blocks of 16 quant bytes after their f16 fields.
pub(super) fn to_quad(rows: [&[u8]; 4], out: &mut [u8]) {
    let head = rows[0].len() - 16;
    for (r, block) in rows.iter().enumerate() {
        for j in 0..head / 2 {
            out[(j * 4 + r) * 2..][..2].copy_from_slice(&block[j * 2..j * 2 + 2]);
        }
        for k in 0..4 {
            out[4 * head + 16 * k + 4 * r..][..4].copy_from_slice(&block[head + 4 * k..][..4]);
        }
    }
}

/// Row `r`'s block (0..4) of a quad back as the file stores it, into `out`.
fn from_quad(quad: &[u8], r: usize, out: &mut [u8]) {
    let head = out.len() - 16;
    for j in 0..head / 2 {
        out[j * 2..j * 2 + 2].copy_from_slice(&quad[(j * 4 + r) * 2..][..2]);
    }
    for k in 0..4 {
        out[head + 4 * k..][..4].copy_from_slice(&quad[4 * head + 16 * k + 4 * r..][..4]);
    }
}

/// Columns `j0..j1` of the product (column-major, `m` per column, into `out`) through the tiles:
/// `w` the whole interleaved matrix of `n` rows, `x` the activation rows as stored, `kb` blocks
/// per row. `j0` starts a group and `j1` ends one (or is `n`).
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "wasm32", target_feature = "simd128")
))]
#[allow(clippy::too_many_arguments)]
pub(super) fn tiles(
    format: TileFormat,
    w: &[u8],
    x: &[u8],
    m: usize,
    kb: usize,
    j0: usize,
    j1: usize,
    out: &mut [f32],
) {
    const D: usize = arch::DECODE_ROWS;
    debug_assert!(j0.is_multiple_of(GROUP) && GROUP.is_multiple_of(D));
    let bb = format.block_bytes();
    let rb = kb * bb;
    let xb = kb * format.act_bytes();
    let act = |i: usize| &x[i * xb..(i + 1) * xb];
    // What the target's tiles read of each activation block besides its quants, found once here.
    let sides = arch::act_blocks(format, x, m, kb);
    let side = |i: usize| &sides[i * kb..(i + 1) * kb];
    for g0 in (j0..j1).step_by(GROUP) {
        let g = GROUP.min(j1 - g0);
        let group = &w[g0 * rb..(g0 + g) * rb];
        let stride = g * bb;
        // Row r of the group: its first block, then every `stride` bytes.
        let row = |r: usize| &group[r * bb..];
        let col = |r: usize| (g0 + r - j0) * m;
        let mut r = 0;
        if m == 1 {
            // Decode: one activation row; D weight rows per pass share its loads.
            while r + D <= g {
                let ws: [&[u8]; D] = std::array::from_fn(|i| row(r + i));
                // SAFETY (all tile calls): format_for checked the CPU; each row slice holds its
                // kb blocks `stride` apart.
                let t = unsafe { arch::tile::<D, 1>(format, ws, stride, [act(0)], [side(0)], kb) };
                out[col(r)..col(r) + D].copy_from_slice(&t[0]);
                r += D;
            }
        }
        while r + 4 <= g {
            let ws = [row(r), row(r + 1), row(r + 2), row(r + 3)];
            let mut put = |i: usize, a: usize, vals: &[f32; 4]| {
                for (q, v) in vals.iter().enumerate() {
                    out[col(r + q) + i + a] = *v;
                }
            };
            let mut i = 0;
            while i + 4 <= m {
                let xs = [act(i), act(i + 1), act(i + 2), act(i + 3)];
                let ss = [side(i), side(i + 1), side(i + 2), side(i + 3)];
                let t = unsafe { arch::tile::<4, 4>(format, ws, stride, xs, ss, kb) };
                t.iter().enumerate().for_each(|(a, v)| put(i, a, v));
                i += 4;
            }
            while i < m {
                let t = unsafe { arch::tile::<4, 1>(format, ws, stride, [act(i)], [side(i)], kb) };
                put(i, 0, &t[0]);
                i += 1;
            }
            r += 4;
        }
        for r in r..g {
            for i in 0..m {
                out[col(r) + i] = unsafe {
                    arch::tile::<1, 1>(format, [row(r)], stride, [act(i)], [side(i)], kb)
                }[0][0];
            }
        }
    }
}

/// Random rows and the scalar definition every target's tiles are checked against.
#[cfg(test)]
pub(super) mod reference {
    use super::TileFormat;
    use crate::rng::SeededRng;
    use half::f16;

    pub const FORMATS: [TileFormat; 4] = [
        TileFormat::Q4_0,
        TileFormat::Q4_1,
        TileFormat::Q5_0,
        TileFormat::Q8_0,
    ];

    /// A weight row of `kb` blocks with random quants, scales near 0.01 and (Q4_1) minimums
    /// near −0.05.
    pub fn weights(rng: &mut SeededRng, kb: usize, f: TileFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..kb {
            out.extend_from_slice(&f16::from_f32(0.005 + rng.next_f32() * 0.01).to_le_bytes());
            match f {
                // Any byte, -128 included: a file may hold it even if the quantizer never makes it.
                TileFormat::Q8_0 => out.extend((0..32).map(|_| rng.next_u64() as u8)),
                TileFormat::Q4_1 => {
                    out.extend_from_slice(&f16::from_f32(-0.05 * rng.next_f32()).to_le_bytes());
                    out.extend((0..16).map(|_| rng.next_u64() as u8));
                }
                _ => out.extend((0..f.block_bytes() - 2).map(|_| rng.next_u64() as u8)),
            }
        }
        out
    }

    /// An activation row of `kb` blocks in `f`'s activation format, quants in -127..=127 as the
    /// quantizers make them, and (Q8_1) s = d·Σq as candle and ggml store it.
    pub fn activations(rng: &mut SeededRng, kb: usize, f: TileFormat) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..kb {
            let d = f16::from_f32(0.005 + rng.next_f32() * 0.01);
            let qs: Vec<i8> = (0..32)
                .map(|_| ((rng.next_u64() % 255) as i32 - 127) as i8)
                .collect();
            out.extend_from_slice(&d.to_le_bytes());
            if f == TileFormat::Q4_1 {
                let s = qs.iter().map(|&q| q as i32).sum::<i32>() as f32 * d.to_f32();
                out.extend_from_slice(&f16::from_f32(s).to_le_bytes());
            }
            out.extend(qs.iter().map(|&q| q as u8));
        }
        out
    }

    fn half(p: &[u8]) -> f32 {
        f16::from_le_bytes([p[0], p[1]]).to_f32()
    }

    /// Per block: scale product times the integer dot product (plus, for Q4_1, min × s), added
    /// to one of `SUMS` running sums in turn (block b to sum b mod 8), which are added pairwise
    /// at the end: sums of an eighth of the blocks each round off less than one of all.
    pub fn dot(w: &[u8], x: &[u8], kb: usize, f: TileFormat) -> f32 {
        let (wb, xb) = (f.block_bytes(), f.act_bytes());
        let mut sums = [0f32; super::SUMS];
        for b in 0..kb {
            let (wp, xp) = (&w[b * wb..], &x[b * xb..]);
            let mut dot = 0i32;
            for i in 0..32 {
                let nibble = |at: usize| {
                    let byte = wp[at + i % 16];
                    (if i < 16 { byte & 15 } else { byte >> 4 }) as i32
                };
                let wq = match f {
                    TileFormat::Q4_0 => nibble(2) - 8,
                    TileFormat::Q4_1 => nibble(4),
                    TileFormat::Q5_0 => {
                        let high = (u32::from_le_bytes([wp[2], wp[3], wp[4], wp[5]]) >> i) & 1;
                        (nibble(6) | (high as i32) << 4) - 16
                    }
                    TileFormat::Q8_0 => wp[2 + i] as i8 as i32,
                };
                dot += wq * (xp[f.act_quants() + i] as i8 as i32);
            }
            let sum = &mut sums[b % super::SUMS];
            *sum += half(wp) * half(xp) * dot as f32;
            if f == TileFormat::Q4_1 {
                *sum += half(&wp[2..]) * half(&xp[2..]);
            }
        }
        super::pairwise(sums, |a, b| a + b)
    }
}

#[cfg(test)]
mod widening {
    /// Every finite f16, positive and negative, subnormals included, widens as `half` does.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn f16_widening_is_exact() {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            if h.is_finite() {
                let got = super::widen_f16(bits);
                assert_eq!(got.to_bits(), h.to_f32().to_bits(), "{bits:#06x}");
            }
        }
    }
}

#[cfg(all(
    test,
    any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )
))]
mod tests {
    use super::reference::*;
    use super::*;
    use crate::rng::SeededRng;

    /// Every tile shape the driver uses, on every format, equals the scalar definition (to f32
    /// summation order, 1e-4 relative, on x86-64; bit for bit on wasm).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn tiles_equal_the_scalar_definition() {
        let kb = 28; // 896 values, Qwen2.5-0.5B's width
        let mut rng = SeededRng::new(3);
        for f in FORMATS {
            if format_for(match f {
                TileFormat::Q4_0 => candle_core::quantized::GgmlDType::Q4_0,
                TileFormat::Q4_1 => candle_core::quantized::GgmlDType::Q4_1,
                TileFormat::Q5_0 => candle_core::quantized::GgmlDType::Q5_0,
                TileFormat::Q8_0 => candle_core::quantized::GgmlDType::Q8_0,
            }) != Some(f)
            {
                return; // an x86 CPU without AVX2: no tiles to check
            }
            // A full group, then 7 rows: a 4-row tile and three single rows.
            let (n, m) = (15usize, 6usize);
            let ws: Vec<Vec<u8>> = (0..n).map(|_| weights(&mut rng, kb, f)).collect();
            let xs: Vec<Vec<u8>> = (0..m).map(|_| activations(&mut rng, kb, f)).collect();
            let mut w = ws.concat();
            interleave(&mut w, n, kb, f);
            for (r, want) in ws.iter().enumerate() {
                let mut row = vec![0u8; want.len()];
                row_of(&w, n, kb, f, r, &mut row);
                assert_eq!(&row, want, "{f:?} row {r}");
            }
            for rows in [1usize, m] {
                let x = xs[..rows].concat();
                let mut out = vec![0f32; n * rows];
                let (first, rest) = out.split_at_mut(8 * rows);
                tiles(f, &w, &x, rows, kb, 0, 8, first);
                tiles(f, &w, &x, rows, kb, 8, n, rest);
                for j in 0..n {
                    for i in 0..rows {
                        let want = dot(&ws[j], &xs[i], kb, f);
                        let got = out[j * rows + i];
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "{f:?} m={rows} row {j} act {i}: {got} vs {want}"
                        );
                        // wasm takes the definition's float steps: the same floats.
                        #[cfg(target_arch = "wasm32")]
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{f:?} m={rows} row {j} act {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
