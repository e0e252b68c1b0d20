//! Quantized weights × f32 activations on the CPU, computed the way ggml computes them: each
//! activation row is quantized to the weight type's dot-product format (Q8_0 or Q8_K) with
//! ggml's exact rounding, then dotted block by block: Q4_0, Q4_1, Q5_0 and Q8_0 with our tiles
//! (tiles.rs: AVX2 on x86-64, SIMD128 on wasm), the K-quants with candle's kernels. candle's own
//! x86 fast path quantizes activations differently, which moves logits by up to ~0.3 against
//! llama.cpp on Q8_0 files; matching llama.cpp is the spec.

use candle_core::quantized::k_quants::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ8K, BlockQ8_0, GgmlType,
};
use candle_core::quantized::GgmlDType;

#[cfg(test)]
use super::activations::quantize_rows;
use super::activations::Activations;
use super::columns::{self, Job};
use super::tiles;
use super::untiled::{self, Untiled};
use crate::engine::dense::widen;
use crate::gguf::TensorType;

enum Blocks {
    Q4_0(Vec<BlockQ4_0>),
    /// SmolLM2's and many small models' format.
    Q4_1(Vec<BlockQ4_1>),
    /// What llama.cpp's Q4_K_M recipe gives rows that are not a multiple of 256 (Qwen2.5-0.5B).
    Q5_0(Vec<BlockQ5_0>),
    Q8_0(Vec<BlockQ8_0>),
    /// K-quants and Q5_1: candle's block dot products (untiled.rs).
    Untiled(Box<dyn Untiled>),
    /// IQ4_NL and IQ4_XS as in the file, dotted by `iq4` against Q8_0 and Q8_K activations.
    Iq4 {
        ty: TensorType,
        raw: Vec<u8>,
    },
    /// F32, F16 and BF16 weights, widened once.
    Dense(Vec<f32>),
}

/// A weight matrix of `n_out` rows of `n_in` values: the file's blocks, for the formats we tile
/// (`tiled`) reordered into interleaved groups of rows (tiles.rs).
pub(super) struct QMatrix {
    n_in: usize,
    n_out: usize,
    blocks: Blocks,
    tiled: Option<tiles::TileFormat>,
}

/// A weight matrix whose encoded bytes are being read. Formats we dot ourselves are read straight
/// into their final storage, so loading never holds such a tensor twice.
pub(super) struct MatrixLanding {
    ty: TensorType,
    n_in: usize,
    n_out: usize,
    storage: Landing,
}

enum Landing {
    Untiled(Box<dyn Untiled>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q8_0(Vec<BlockQ8_0>),
    Raw(Vec<u8>),
}

pub(super) fn block_bytes<T: GgmlType>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: the view covers exactly the slice's blocks, which are plain data.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

/// `n` zero values straight from the allocator's zeroed memory: fresh wasm pages and fresh
/// mappings come zeroed, so this writes nothing, where `vec![T::zeros(); n]` wrote every block
/// (115 ms of a 281 MB model's 900 ms cached load in Chromium here). None when they do not fit.
///
/// # Safety
/// All-zero bytes must be a valid `T`: true of the block types (f16 and byte arrays) and of `u8`.
pub(super) unsafe fn zeroed<T>(n: usize) -> Option<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the pointer comes from the global allocator with this exact layout, as `Vec` frees
    // it, and holds `n` valid values (the caller's promise).
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut T;
        (!p.is_null()).then(|| Vec::from_raw_parts(p, n, n))
    }
}

impl MatrixLanding {
    /// Storage for `n_out` rows of `n_in` values of type `ty` (dims already checked against the
    /// file); an error when it does not fit in memory.
    pub fn new(ty: TensorType, n_in: usize, n_out: usize) -> candle_core::Result<Self> {
        let blocks = (n_in * n_out) / ty.block_size;
        // SAFETY: zero bytes are a valid block of each of these types, and a valid u8.
        let storage = unsafe {
            match ty.dtype {
                Some(GgmlDType::Q4_0) => zeroed(blocks).map(Landing::Q4_0),
                Some(GgmlDType::Q4_1) => zeroed(blocks).map(Landing::Q4_1),
                Some(GgmlDType::Q5_0) => zeroed(blocks).map(Landing::Q5_0),
                Some(GgmlDType::Q8_0) => zeroed(blocks).map(Landing::Q8_0),
                dtype => match dtype.and_then(|d| untiled::storage(d, blocks)) {
                    Some(made) => made.map(Landing::Untiled),
                    None => blocks
                        .checked_mul(ty.type_size)
                        .and_then(|n| zeroed(n))
                        .map(Landing::Raw),
                },
            }
        };
        let storage = storage.ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "a {n_out}×{n_in} {} matrix does not fit in memory",
                ty.name
            ))
        })?;
        Ok(Self {
            ty,
            n_in,
            n_out,
            storage,
        })
    }

    /// Where the tensor's encoded bytes go; exactly its size.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            Landing::Q4_0(v) => block_bytes(v),
            Landing::Q4_1(v) => block_bytes(v),
            Landing::Q5_0(v) => block_bytes(v),
            Landing::Q8_0(v) => block_bytes(v),
            Landing::Untiled(v) => v.bytes_mut(),
            Landing::Raw(v) => v,
        }
    }

    pub fn finish(self) -> candle_core::Result<QMatrix> {
        let Self {
            ty,
            n_in,
            n_out,
            storage,
        } = self;
        let tiled = ty.dtype.and_then(tiles::format_for);
        let mut storage = storage;
        if let Some(f) = tiled {
            let bytes = match &mut storage {
                Landing::Q4_0(v) => block_bytes(v),
                Landing::Q4_1(v) => block_bytes(v),
                Landing::Q5_0(v) => block_bytes(v),
                Landing::Q8_0(v) => block_bytes(v),
                Landing::Untiled(v) => v.bytes_mut(),
                Landing::Raw(v) => v,
            };
            tiles::interleave(bytes, n_out, n_in / 32, f);
        }
        let blocks = match storage {
            Landing::Q4_0(v) => Blocks::Q4_0(v),
            Landing::Q4_1(v) => Blocks::Q4_1(v),
            Landing::Q5_0(v) => Blocks::Q5_0(v),
            Landing::Q8_0(v) => Blocks::Q8_0(v),
            Landing::Untiled(v) => Blocks::Untiled(v),
            Landing::Raw(raw) => match ty.dtype {
                Some(GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => {
                    Blocks::Dense(widen(ty, &raw, n_in)?)
                }
                _ => Blocks::Iq4 { ty, raw },
            },
        };
        Ok(QMatrix {
            n_in,
            n_out,
            blocks,
            tiled,
        })
    }
}

impl QMatrix {
    /// `a` holds `m` rows of `n_in`; returns `m` rows of `n_out`.
    pub fn forward(&self, a: &Activations) -> candle_core::Result<Vec<f32>> {
        let [out] = forward_many([self], a)?;
        Ok(out)
    }

    /// This product as a job for `columns::run`.
    fn job<'a>(&'a self, a: &'a Activations) -> Job<'a> {
        let (k, n) = (self.n_in, self.n_out);
        match &self.blocks {
            Blocks::Q4_0(w) => matmul(w, a, k, n, self.tiled),
            Blocks::Q4_1(w) => matmul(w, a, k, n, self.tiled),
            Blocks::Q5_0(w) => matmul(w, a, k, n, self.tiled),
            Blocks::Q8_0(w) => matmul(w, a, k, n, self.tiled),
            Blocks::Untiled(w) => w.job(a, k, n),
            Blocks::Iq4 { ty, raw } => iq4_matmul(*ty, raw, a, k, n),
            Blocks::Dense(w) => {
                let (x, m) = (a.x, a.m);
                job(n, k, move |j0, j1, out| {
                    for j in j0..j1 {
                        for i in 0..m {
                            out[(j - j0) * m + i] =
                                super::ops::dot(&x[i * k..(i + 1) * k], &w[j * k..(j + 1) * k]);
                        }
                    }
                })
            }
        }
    }

    /// Row `r` as f32 (an embedding lookup).
    pub fn row(&self, r: usize) -> candle_core::Result<Vec<f32>> {
        let k = self.n_in;
        let mut out = vec![0f32; k];
        match &self.blocks {
            Blocks::Q4_0(w) => BlockQ4_0::to_float(&self.row_blocks(w, r), &mut out),
            Blocks::Q4_1(w) => BlockQ4_1::to_float(&self.row_blocks(w, r), &mut out),
            Blocks::Q5_0(w) => BlockQ5_0::to_float(&self.row_blocks(w, r), &mut out),
            Blocks::Q8_0(w) => BlockQ8_0::to_float(&self.row_blocks(w, r), &mut out),
            Blocks::Untiled(w) => w.row(r, k, &mut out),
            Blocks::Iq4 { ty, raw } => {
                let row = k / ty.block_size * ty.type_size;
                super::super::iq4::dequantize(*ty, &raw[r * row..(r + 1) * row], &mut out);
            }
            Blocks::Dense(w) => out.copy_from_slice(&w[r * k..(r + 1) * k]),
        }
        Ok(out)
    }
}

/// The products of several matrices with the same activation rows (`a`, `m` rows of their
/// common `n_in`), as one parallel region: each `m` rows of its `n_out`.
pub(super) fn forward_many<const N: usize>(
    mats: [&QMatrix; N],
    a: &Activations,
) -> candle_core::Result<[Vec<f32>; N]> {
    debug_assert!(mats.iter().all(|w| a.x.len() == a.m * w.n_in));
    let jobs: Vec<Job> = mats.iter().map(|w| w.job(a)).collect();
    let outs = columns::run(a.m, &jobs);
    Ok(outs.try_into().expect("one product per matrix"))
}

pub(super) fn job<'a>(
    n: usize,
    k: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync + 'a,
) -> Job<'a> {
    Job {
        n,
        k,
        f: Box::new(f),
    }
}

impl QMatrix {
    /// Row `r`'s blocks one after another, gathered when the matrix is interleaved.
    fn row_blocks<'b, T: GgmlType>(&self, w: &'b [T], r: usize) -> std::borrow::Cow<'b, [T]> {
        let kb = self.n_in / T::BLCK_SIZE;
        match self.tiled {
            None => std::borrow::Cow::Borrowed(&w[r * kb..(r + 1) * kb]),
            Some(f) => {
                let mut row = vec![T::zeros(); kb];
                tiles::row_of(
                    block_slice_bytes(w),
                    self.n_out,
                    kb,
                    f,
                    r,
                    block_bytes(&mut row),
                );
                std::borrow::Cow::Owned(row)
            }
        }
    }
}

/// IQ4 weights × activations: IQ4_NL against the shared Q8_0 rows, IQ4_XS against Q8_K rows.
fn iq4_matmul<'a>(ty: TensorType, w: &'a [u8], a: &'a Activations, k: usize, n: usize) -> Job<'a> {
    use super::super::iq4;
    let m = a.m;
    let row = k / ty.block_size * ty.type_size;
    let w_row = move |j: usize| &w[j * row..(j + 1) * row];
    if ty == TensorType::IQ4_NL {
        let xq = a.quantized::<BlockQ8_0>(k);
        return job(n, k, move |j0, j1, out| {
            let x = block_slice_bytes(&xq);
            let xr = x.len() / m.max(1);
            for j in j0..j1 {
                for i in 0..m {
                    out[(j - j0) * m + i] = iq4::dot_nl(w_row(j), &x[i * xr..(i + 1) * xr]);
                }
            }
        });
    }
    let xq = a.quantized::<BlockQ8K>(k);
    let xr = k / 256 * iq4::Q8_K_BYTES;
    job(n, k, move |j0, j1, out| {
        let x = block_slice_bytes(&xq);
        for j in j0..j1 {
            for i in 0..m {
                out[(j - j0) * m + i] = iq4::dot_xs(w_row(j), &x[i * xr..(i + 1) * xr]);
            }
        }
    })
}

fn block_slice_bytes<T>(v: &[T]) -> &[u8] {
    // SAFETY: the block types are plain data; viewing them as bytes is always valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// `tiled`: the format, when `w` is interleaved for the tiles.
fn matmul<'a, T: GgmlType + Sync>(
    w: &'a [T],
    a: &'a Activations,
    k: usize,
    n: usize,
    tiled: Option<tiles::TileFormat>,
) -> Job<'a> {
    let m = a.m;
    let kb = k / T::BLCK_SIZE;
    let xq = a.quantized::<T::VecDotType>(k);
    #[cfg(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    ))]
    if let Some(format) = tiled {
        return job(n, k, move |j0, j1, out| {
            let (w, x) = (block_slice_bytes(w), block_slice_bytes(&xq));
            tiles::tiles(format, w, x, m, kb, j0, j1, out)
        });
    }
    let _ = tiled;
    let xb = k / <T::VecDotType as GgmlType>::BLCK_SIZE;
    job(n, k, move |j0, j1, out| {
        for j in j0..j1 {
            for i in 0..m {
                out[(j - j0) * m + i] =
                    T::vec_dot(k, &w[j * kb..(j + 1) * kb], &xq[i * xb..(i + 1) * xb]);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_match_the_format_table() {
        for (ty, size) in [
            (TensorType::Q4_0, std::mem::size_of::<BlockQ4_0>()),
            (TensorType::Q8_0, std::mem::size_of::<BlockQ8_0>()),
            (TensorType::Q5_0, std::mem::size_of::<BlockQ5_0>()),
            (TensorType::Q4_1, std::mem::size_of::<BlockQ4_1>()),
        ] {
            let f = tiles::format_for(ty.dtype.unwrap());
            assert!(f.is_none_or(|f| f.block_bytes() == size), "{}", ty.name);
            assert_eq!(ty.type_size, size, "{}", ty.name);
        }
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
        let q8_1 = std::mem::size_of::<candle_core::quantized::k_quants::BlockQ8_1>();
        assert_eq!(q8_1, 36);
    }

    /// Storage too big for the address space is an error, for the tiled formats and the rest,
    /// where `vec!` would have aborted the module; storage that fits starts zeroed. (The sizes
    /// are a 64-bit target's; wasm-bindgen's runner runs none of these plain tests.)
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn storage_that_cannot_fit_is_an_error() {
        for ty in [TensorType::Q4_0, TensorType::Q8_0, TensorType::Q6_K] {
            let err = MatrixLanding::new(ty, 1 << 40, 1 << 22)
                .err()
                .expect(ty.name);
            assert!(err.to_string().contains("does not fit in memory"), "{err}");
            let mut fits = MatrixLanding::new(ty, 256, 3).unwrap();
            assert!(fits.bytes_mut().iter().all(|&b| b == 0), "{}", ty.name);
        }
    }
}

#[cfg(test)]
mod against_candle {
    use super::*;
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Device, Module, Tensor};

    /// Our matmul and candle's agree to within activation-rounding noise on every block type,
    /// for one row (decode) and several (prefill).
    #[test]
    fn agrees_with_candle_qmatmul() {
        let (k, n) = (512usize, 96usize);
        let mut rng = crate::rng::SeededRng::new(9);
        let w: Vec<f32> = (0..k * n).map(|_| rng.next_normal() * 0.05).collect();
        for ty in [
            TensorType::Q4_0,
            TensorType::Q4_1,
            TensorType::Q8_0,
            TensorType::Q4_K,
            TensorType::Q6_K,
            TensorType::Q5_0,
        ] {
            let wt = Tensor::from_vec(w.clone(), (n, k), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, ty.dtype.unwrap()).unwrap();
            let data = q.data().unwrap();
            let ours = {
                let mut p = MatrixLanding::new(ty, k, n).unwrap();
                p.bytes_mut().copy_from_slice(&data);
                p.finish().unwrap()
            };
            let theirs = QMatMul::from_qtensor(q).unwrap();
            for m in [1usize, 12] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.next_normal()).collect();
                let a = ours.forward(&Activations::new(&x, m)).unwrap();
                let xt = Tensor::from_vec(x, (m, k), &Device::Cpu).unwrap();
                let b = theirs
                    .forward(&xt)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let err = a
                    .iter()
                    .zip(&b)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0f32, f32::max);
                assert!(err < 0.05, "{} m={m}: max diff {err}", ty.name);
            }
        }
    }
}

#[cfg(test)]
mod exact {
    use super::*;
    use candle_core::quantized::k_quants::BlockQ8_1;

    /// Each product equals the exact product of the dequantized operands (weights as stored,
    /// activations after their 8-bit quantization).
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn block_dots_are_exact_on_dequantized_operands() {
        let (k, n) = (512usize, 64usize);
        let mut rng = crate::rng::SeededRng::new(5);
        // One row (decode: the 8-row tiles) and sixteen (prefill: the 4×4 tiles).
        for (ty, m) in [
            TensorType::Q4_0,
            TensorType::Q4_1,
            TensorType::Q5_0,
            TensorType::Q8_0,
            TensorType::Q4_K,
            TensorType::Q6_K,
            TensorType::IQ4_NL,
            TensorType::IQ4_XS,
        ]
        .into_iter()
        .flat_map(|t| [(t, 1usize), (t, 16)])
        {
            let w: Vec<f32> = (0..k * n).map(|_| rng.next_normal() * 0.05).collect();
            let (data, wd) = crate::engine::dense::quantized(w, n, k, ty);
            let ours = {
                let mut p = MatrixLanding::new(ty, k, n).unwrap();
                p.bytes_mut().copy_from_slice(&data);
                p.finish().unwrap()
            };
            let x: Vec<f32> = (0..m * k).map(|_| rng.next_normal() * 3.0).collect();
            let got = ours.forward(&Activations::new(&x, m)).unwrap();
            let mut q8_1_sums = Vec::new();
            let xd: Vec<f32> = match ty.dtype {
                Some(GgmlDType::Q4K | GgmlDType::Q6K) | None if ty != TensorType::IQ4_NL => {
                    let xq: Vec<candle_core::quantized::k_quants::BlockQ8K> =
                        quantize_rows(&x, m, k); // ggml's rounding; candle's differs on ties only
                    let mut v = vec![0f32; m * k];
                    candle_core::quantized::k_quants::BlockQ8K::to_float(&xq, &mut v);
                    v
                }
                Some(GgmlDType::Q4_1) => {
                    let xq: Vec<BlockQ8_1> = quantize_rows(&x, m, k);
                    let mut v = vec![0f32; m * k];
                    BlockQ8_1::to_float(&xq, &mut v);
                    // Q4_1 is d·q + min: the min's term is min × s, s = d·Σq as Q8_1 stores it.
                    q8_1_sums = block_slice_bytes(&xq)
                        .chunks_exact(36)
                        .map(|b| half::f16::from_le_bytes([b[2], b[3]]).to_f32())
                        .collect();
                    v
                }
                _ => {
                    let xq: Vec<BlockQ8_0> = quantize_rows(&x, m, k);
                    let mut v = vec![0f32; m * k];
                    BlockQ8_0::to_float(&xq, &mut v);
                    v
                }
            };
            let min = |j: usize, b: usize| {
                let at = (j * k / 32 + b) * 20 + 2;
                half::f16::from_le_bytes([data[at], data[at + 1]]).to_f32() as f64
            };
            let mut worst = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let e: f64 = if ty == TensorType::Q4_1 {
                        (0..k)
                            .map(|t| {
                                let (b, mw) = (t / 32, min(j, t / 32));
                                xd[i * k + t] as f64 * (wd[j * k + t] as f64 - mw)
                                    + if t % 32 == 0 {
                                        mw * q8_1_sums[i * k / 32 + b] as f64
                                    } else {
                                        0.0
                                    }
                            })
                            .sum()
                    } else {
                        (0..k)
                            .map(|t| xd[i * k + t] as f64 * wd[j * k + t] as f64)
                            .sum()
                    };
                    worst = worst.max((e - got[i * n + j] as f64).abs());
                }
            }
            assert!(worst < 1e-3, "{} m={m}: {worst}", ty.name);
        }
    }

    /// IQ4_NL and IQ4_XS rows quantized by ggml, dotted with activations, give ggml's own dot
    /// products (its x86 kernels, tests/data/ggml_iq4.json) to float rounding.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn iq4_products_are_ggmls() {
        let r = crate::engine::iq4::reference::load();
        for c in &r.cases {
            let mut p = MatrixLanding::new(c.ty, r.k, r.rows).unwrap();
            p.bytes_mut().copy_from_slice(&c.blocks);
            let ours = p.finish().unwrap();
            for m in [1, r.acts] {
                let got = ours.forward(&Activations::new(&r.x[..m * r.k], m)).unwrap();
                for (i, (g, e)) in got.iter().zip(&c.dots).enumerate() {
                    let tol = 2e-5 * e.abs().max(1.0);
                    assert!(
                        (g - e).abs() <= tol,
                        "{} m={m} product {i}: {g} vs ggml's {e}",
                        c.ty.name
                    );
                }
            }
            for r0 in 0..r.rows {
                let row = ours.row(r0).unwrap();
                assert_eq!(
                    row,
                    c.dequantized[r0 * r.k..(r0 + 1) * r.k],
                    "{} row {r0}",
                    c.ty.name
                );
            }
        }
    }
}
