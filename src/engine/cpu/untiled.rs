//! Weights in the block formats we have no tiles for (the K-quants, Q5_1): candle's per-format
//! block dot products (`vec_dot_4`, four weight rows against one activation row: AVX2 on x86,
//! SIMD128 on wasm) run as our jobs, against activations quantized once per step with ggml's
//! rounding (activations.rs). candle's own matmul ran these before, on its own thread pool,
//! which on 2 cores fought the step's crew (crew.rs) for the CPU: the 0.5B-shaped Q4_K_M file's
//! decode fell from 0.72× to 0.39× llama.cpp at 2 threads.

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ5_1, BlockQ6K, BlockQ8K, BlockQ8_1, GgmlType,
};
use candle_core::quantized::GgmlDType;

use super::activations::Activations;
use super::columns::Job;

/// A matrix of one such format, `n` rows of `k` values.
pub(super) trait Untiled: Send + Sync {
    /// Its encoded blocks, to be read into.
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Its product with `a` as a job.
    fn job<'a>(&'a self, a: &'a Activations, k: usize, n: usize) -> Job<'a>;
    /// Row `r` as f32.
    fn row(&self, r: usize, k: usize, out: &mut [f32]);
}

/// Zeroed storage for `blocks` blocks of `dtype`, when it is one of these formats: Some(None)
/// when it does not fit in memory.
pub(super) fn storage(dtype: GgmlDType, blocks: usize) -> Option<Option<Box<dyn Untiled>>> {
    fn make<T: GgmlType + Send + Sync + 'static>(blocks: usize) -> Option<Box<dyn Untiled>> {
        // SAFETY: zero bytes are a valid block of every candle block type (scales 0, quants 0).
        let v: Vec<T> = unsafe { super::qmatmul::zeroed(blocks) }?;
        Some(Box::new(v))
    }
    Some(match dtype {
        GgmlDType::Q5_1 => make::<BlockQ5_1>(blocks),
        GgmlDType::Q8_1 => make::<BlockQ8_1>(blocks),
        GgmlDType::Q2K => make::<BlockQ2K>(blocks),
        GgmlDType::Q3K => make::<BlockQ3K>(blocks),
        GgmlDType::Q4K => make::<BlockQ4K>(blocks),
        GgmlDType::Q5K => make::<BlockQ5K>(blocks),
        GgmlDType::Q6K => make::<BlockQ6K>(blocks),
        GgmlDType::Q8K => make::<BlockQ8K>(blocks),
        _ => return None,
    })
}

impl<T: GgmlType + Send + Sync> Untiled for Vec<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        super::qmatmul::block_bytes(self)
    }

    fn job<'a>(&'a self, a: &'a Activations, k: usize, n: usize) -> Job<'a> {
        let m = a.m;
        let kb = k / T::BLCK_SIZE;
        let xb = k / <T::VecDotType as GgmlType>::BLCK_SIZE;
        let xq = a.quantized::<T::VecDotType>(k);
        let w = self.as_slice();
        super::qmatmul::job(n, k, move |j0, j1, out| {
            let row = |j: usize| &w[j * kb..(j + 1) * kb];
            for i in 0..m {
                let x = &xq[i * xb..(i + 1) * xb];
                let mut j = j0;
                while j + 4 <= j1 {
                    let d = T::vec_dot_4(k, row(j), row(j + 1), row(j + 2), row(j + 3), x);
                    for (c, v) in [d.0, d.1, d.2, d.3].into_iter().enumerate() {
                        out[(j + c - j0) * m + i] = v;
                    }
                    j += 4;
                }
                for j in j..j1 {
                    out[(j - j0) * m + i] = T::vec_dot(k, row(j), x);
                }
            }
        })
    }

    fn row(&self, r: usize, k: usize, out: &mut [f32]) {
        let kb = k / T::BLCK_SIZE;
        T::to_float(&self[r * kb..(r + 1) * kb], out);
    }
}
