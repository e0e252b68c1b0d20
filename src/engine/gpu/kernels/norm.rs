//! RMSNorm over rows: the layer norms (one row per token) and Qwen3's per-head q/k norms.

use super::{with_step, Binding, Kernel};

pub struct RmsNorm;

impl Kernel for RmsNorm {
    fn key(&self) -> String {
        "rmsnorm".into()
    }

    fn source(&self) -> String {
        with_step(include_str!("../../../../shaders/rmsnorm.wgsl"))
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[Read, ReadWrite, Read, Uniform, Uniform]
    }

    fn class(&self) -> &'static str {
        "norm"
    }
}

/// The `NormParams` uniform (`shaders/rmsnorm.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub width: u32,
    /// Rows per token (heads, for the per-head norm).
    pub per_token: u32,
    /// A fixed row count; 0: `per_token` rows for each of the step's tokens.
    pub fixed: u32,
    pub eps: f32,
}

impl NormParams {
    pub fn new(width: usize, per_token: usize, fixed: u32, eps: f64) -> Self {
        Self {
            width: width as u32,
            per_token: per_token as u32,
            fixed,
            eps: eps as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, random};
    use crate::engine::gpu::kernels::{
        bytes_f32, f32_bytes, storage, storage_init, uniform, Groups, Op, Pool, Step,
    };
    use candle_core::{Device, Tensor};

    /// Against candle_nn's rms_norm, per token and per head, widths below and above the
    /// workgroup size. Tolerance 1e-5 of each value's magnitude (another summation order).
    async fn rmsnorm_matches_candle() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        for (width, per_token, seq) in [
            (896usize, 1usize, 3u32),
            (64, 14, 5),
            (40, 1, 1),
            (130, 2, 2),
        ] {
            let rows = seq as usize * per_token;
            let x = random(width as u64, rows * width, 2.0);
            let w = random(7, width, 1.0);
            let expect = candle_nn::ops::rms_norm(
                &Tensor::from_vec(x.clone(), (rows, width), &Device::Cpu).unwrap(),
                &Tensor::from_vec(w.clone(), width, &Device::Cpu).unwrap(),
                1e-6,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
            let (xb, wb) = (
                storage_init(&gpu.device, &f32_bytes(&x), "x"),
                storage_init(&gpu.device, &f32_bytes(&w), "w"),
            );
            let out = storage(&gpu.device, (rows * width * 4) as u64, "out");
            let (nb, step) = (
                uniform(&gpu.device, &NormParams::new(width, per_token, 0, 1e-6)),
                uniform(&gpu.device, &Step { seq, start: 0 }),
            );
            let op = Op::new(
                &pool,
                &RmsNorm,
                &[&xb, &out, &wb, &nb, &step],
                Groups::PerToken {
                    per_token: per_token as u32,
                    y: 1,
                },
            );
            let got = bytes_f32(&testing::run(&gpu, &[op], seq, &out).await);
            let scale: Vec<f32> = expect.iter().map(|v| v.abs().max(1.0)).collect();
            assert_close(
                &got,
                &expect,
                &scale,
                1e-5,
                &format!("width {width} × {rows} rows"),
            );
        }
    }
    testing::both!(rmsnorm_matches_candle);
}
