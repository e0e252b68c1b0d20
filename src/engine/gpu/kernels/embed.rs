//! Embedding lookup straight from the quantized table: each token's row dequantized on the GPU.

use super::matmul::Dims;
use super::{preamble, uniform, Binding, Groups, Kernel, Op, Pool};
use crate::engine::gpu::device::Caps;
use crate::engine::gpu::weights::{Format, GpuMatrix};

pub struct Embed {
    pub format: Format,
    pub caps: Caps,
}

impl Kernel for Embed {
    fn key(&self) -> String {
        format!("embed_{}_h{}", self.format.name(), self.caps.f16 as u8)
    }

    fn source(&self) -> String {
        format!(
            "{}{}\n{}",
            preamble(self.caps),
            self.format.shader(),
            include_str!("../../../../shaders/embed.wgsl")
        )
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[Read, Read, Read, ReadWrite, Uniform, Uniform]
    }

    fn class(&self) -> &'static str {
        "embed"
    }
}

/// The dispatches that write the rows of `ids` from every part of `table` into `x`.
pub fn dispatches(
    pool: &Pool,
    caps: Caps,
    table: &GpuMatrix,
    [ids, x, step]: [&wgpu::Buffer; 3],
) -> Vec<Op> {
    let kernel = Embed {
        format: table.format,
        caps,
    };
    let k = table.n_in;
    table
        .parts
        .iter()
        .map(|p| {
            let d = uniform(pool.device(), &Dims::rows_of(k, p));
            Op::new(
                pool,
                &kernel,
                &[&p.quants, &p.scales, ids, x, &d, step],
                Groups::TokensInY((k as u32 / 4).div_ceil(64)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, quantized, random};
    use crate::engine::gpu::kernels::{bytes_f32, storage, storage_init, words_bytes, Step};

    /// Rows picked by id equal candle's dequantized rows (exactly in f32; within 1e-3 of the row's
    /// scale with f16 math), also when the table is split across parts.
    async fn embedding_rows_match_dequantized_table() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        for ty in testing::TYPES {
            let (k, n) = (if ty.block_size == 256 { 256 } else { 96 }, 37usize);
            let w = random(ty.type_size as u64, n * k, 0.1);
            let (raw, wd) = quantized(w, n, k, ty);
            let ids = [36u32, 0, 5, 5, 19, 1, 35];
            let expect: Vec<f32> = ids
                .iter()
                .flat_map(|&i| wd[i as usize * k..(i as usize + 1) * k].to_vec())
                .collect();
            for (caps, table) in testing::uploads(&gpu, ty, &raw, k, n, 4).await {
                let kernel = Embed {
                    format: table.format,
                    caps,
                };
                let idb = storage_init(&gpu.device, &words_bytes(&ids), "ids");
                let x = storage(&gpu.device, (ids.len() * k * 4) as u64, "x");
                let seq = ids.len() as u32;
                let step = uniform(&gpu.device, &Step { seq, start: 0 });
                let ops = dispatches(&pool, caps, &table, [&idb, &x, &step]);
                let got = bytes_f32(&testing::run(&gpu, &ops, Step { seq, start: 0 }, &x).await);
                let scale: Vec<f32> = expect.iter().map(|_| 0.1).collect();
                let tol = if caps.f16 { 1e-2 } else { 1e-6 };
                assert_close(
                    &got,
                    &expect,
                    &scale,
                    tol,
                    &format!("{} parts={} {}", ty.name, table.parts.len(), kernel.key()),
                );
            }
        }
    }
    testing::both!(embedding_rows_match_dequantized_table);
}
