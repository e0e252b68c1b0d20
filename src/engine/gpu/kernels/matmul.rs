//! Quantized matrix × activations: y = x · Wᵀ, or y += x · Wᵀ for a residual. One kernel serves
//! decode (a tile of one activation row: matrix × vector) and prefill (tiles of 8 rows, each
//! weight dequantized once per tile), for every block format through the format's `weight4`;
//! the FFN's down projection reads silu(gate) × up as its input.

use super::{preamble, uniform, Binding, Groups, Kernel, Op, Pool};
use crate::engine::gpu::device::Caps;
use crate::engine::gpu::weights::{Format, GpuMatrix, Part};

/// Activation rows per workgroup in prompt steps.
pub const PREFILL_TILE: u32 = 8;

pub struct MatMul {
    pub format: Format,
    /// Activation rows per workgroup.
    pub tile: u32,
    pub caps: Caps,
    /// The input is silu(x) × up (binding 6), the FFN's gating.
    pub gated: bool,
}

impl MatMul {
    /// The variant for steps of `seq` activation rows: one row per workgroup for decode, tiles
    /// of [`PREFILL_TILE`] rows for prompts.
    pub fn for_rows(format: Format, seq: u32, caps: Caps, gated: bool) -> Self {
        Self {
            format,
            tile: if seq == 1 { 1 } else { PREFILL_TILE },
            caps,
            gated,
        }
    }
}

/// What one matrix product reads and writes.
pub struct Operands<'a> {
    /// Activation rows.
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    /// The `Step` uniform.
    pub step: &'a wgpu::Buffer,
    /// With it the input is silu(x) × up (the FFN's gating).
    pub up: Option<&'a wgpu::Buffer>,
}

/// The dispatches of y = x · Wᵀ (y += x · Wᵀ with `accumulate`) over every part of `w`, for
/// steps of one token and of many; `fixed` rows instead of the step's when non-zero. The one
/// place a split matrix's dispatch list is built: the forward pass, the bandwidth probe and the
/// kernel tests all take it from here.
pub fn dispatches(
    pool: &Pool,
    caps: Caps,
    w: &GpuMatrix,
    io: &Operands,
    accumulate: bool,
    fixed: u32,
) -> Vec<Op> {
    let gated = io.up.is_some();
    let one = MatMul::for_rows(w.format, 1, caps, gated);
    let tiled = MatMul::for_rows(w.format, 2, caps, gated);
    w.parts
        .iter()
        .map(|p| {
            let d = uniform(
                pool.device(),
                &Dims::new(w.n_in, p, w.n_out, fixed, accumulate),
            );
            let mut buffers = vec![&p.quants, &p.scales, io.x, io.y, &d, io.step];
            buffers.extend(io.up);
            let groups = |k: &MatMul| Groups::MatMul {
                rows: p.rows as u32,
                tile: k.tile,
                fixed,
            };
            match fixed {
                1 => Op::new(pool, &one, &buffers, groups(&one)),
                _ => Op::pair(
                    pool,
                    (&one, groups(&one)),
                    (&tiled, groups(&tiled)),
                    &buffers,
                ),
            }
        })
        .collect()
}

impl Kernel for MatMul {
    fn key(&self) -> String {
        format!(
            "matmul_{}_t{}_h{}_s{}_g{}",
            self.format.name(),
            self.tile,
            self.caps.f16 as u8,
            self.caps.subgroups as u8,
            self.gated as u8
        )
    }

    fn source(&self) -> String {
        let main = match self.caps.subgroups {
            true => include_str!("../../../../shaders/subgroup/matmul_main.wgsl"),
            false => include_str!("../../../../shaders/matmul_main.wgsl"),
        };
        let input = match self.gated {
            true => include_str!("../../../../shaders/matmul_input_gated.wgsl"),
            false => include_str!("../../../../shaders/matmul_input.wgsl"),
        };
        format!(
            "{}const TM: u32 = {}u;\n{}\n{input}\n{}\n{}",
            preamble(self.caps),
            self.tile,
            self.format.shader(),
            include_str!("../../../../shaders/matmul.wgsl"),
            main
        )
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        match self.gated {
            true => &[Read, Read, Read, ReadWrite, Uniform, Uniform, Read],
            false => &[Read, Read, Read, ReadWrite, Uniform, Uniform],
        }
    }

    fn class(&self) -> &'static str {
        "matmul"
    }
}

/// The `Dims` uniform (`shaders/dims.wgsl`): one part of a weight matrix as the matmul and
/// embedding kernels see it.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    /// Values per row (n_in).
    pub k: u32,
    /// Rows in this part.
    pub rows: u32,
    /// The part's first row among all rows.
    pub row0: u32,
    /// Output row stride (n_out).
    pub n: u32,
    /// Activation rows when fixed; 0: the step's token count.
    pub m: u32,
    /// 1: the product is added to the output (a residual) rather than written.
    pub accumulate: u32,
}

impl Dims {
    pub fn new(k: usize, part: &Part, n: usize, fixed: u32, accumulate: bool) -> Self {
        Self {
            k: k as u32,
            rows: part.rows as u32,
            row0: part.row0 as u32,
            n: n as u32,
            m: fixed,
            accumulate: accumulate as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, quantized, random};
    use crate::engine::gpu::kernels::{bytes_f32, f32_bytes, storage, storage_init, Step};
    use candle_core::{Device, Tensor};

    /// Every format, decode and prefill tiles, shapes off the tile sizes, each variant the
    /// device has, plain and gated input (silu(x) × up, added to what y held): GPU result vs
    /// f64 sums over candle's dequantized weights and candle_nn's silu. Tolerance: 1e-4 of the
    /// row's |x|·|w| scale (f32 sums in another order), 4e-3 with f16 dequantization.
    async fn matmul_matches_cpu_reference() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        let mut seed = 1;
        for ty in testing::TYPES {
            let k_step = if ty.block_size == 256 { 256 } else { 32 };
            for (k_blocks, n, m) in [(2usize, 7usize, 1u32), (3, 13, 5), (1, 64, 9), (4, 3, 17)] {
                let k = k_blocks * k_step;
                seed += 1;
                let w = random(seed, n * k, 0.05);
                let (raw, wd) = quantized(w, n, k, ty);
                let gated = seed % 2 == 0;
                let x = random(seed + 100, m as usize * k, 1.0);
                let up = random(seed + 200, m as usize * k, 1.0);
                let before = random(seed + 300, m as usize * n, 1.0);
                let input: Vec<f32> = match gated {
                    true => {
                        let s = candle_nn::ops::silu(
                            &Tensor::from_vec(x.clone(), x.len(), &Device::Cpu).unwrap(),
                        )
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                        s.iter().zip(&up).map(|(a, b)| a * b).collect()
                    }
                    false => x.clone(),
                };
                let mut expect = vec![0f32; m as usize * n];
                let mut scale = vec![0f32; m as usize * n];
                for i in 0..m as usize {
                    for j in 0..n {
                        let (mut s, mut a) = (0f64, 0f64);
                        for t in 0..k {
                            s += input[i * k + t] as f64 * wd[j * k + t] as f64;
                            a += (input[i * k + t] as f64 * wd[j * k + t] as f64).abs();
                        }
                        expect[i * n + j] = if gated {
                            before[i * n + j] + s as f32
                        } else {
                            s as f32
                        };
                        scale[i * n + j] = a as f32;
                    }
                }
                for (caps, w) in testing::uploads(&gpu, ty, &raw, k, n, 2).await {
                    let xb = storage_init(&gpu.device, &f32_bytes(&x), "x");
                    let ub = storage_init(&gpu.device, &f32_bytes(&up), "up");
                    let y = match gated {
                        true => storage_init(&gpu.device, &f32_bytes(&before), "y"),
                        false => storage(&gpu.device, (m as usize * n * 4) as u64, "y"),
                    };
                    let step = uniform(&gpu.device, &Step { seq: m, start: 0 });
                    let io = Operands {
                        x: &xb,
                        y: &y,
                        step: &step,
                        up: gated.then_some(&ub),
                    };
                    let ops = dispatches(&pool, caps, &w, &io, gated, 0);
                    let kernel = MatMul::for_rows(w.format, m, caps, gated);
                    let got = bytes_f32(&testing::run(&gpu, &ops, m, &y).await);
                    let tol = if caps.f16 { 4e-3 } else { 1e-4 };
                    let what = format!(
                        "{} k={k} n={n} m={m} parts={} {}",
                        ty.name,
                        w.parts.len(),
                        kernel.key()
                    );
                    let scale: Vec<f32> = scale
                        .iter()
                        .map(|s| s.max(if gated { 1e-3 } else { 0.0 }))
                        .collect();
                    assert_close(&got, &expect, &scale, tol, &what);
                }
            }
        }
    }
    testing::both!(matmul_matches_cpu_reference);
}
