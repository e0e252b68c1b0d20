//! In-place element-wise ops: residual and bias adds, and SiLU × gate.

use super::{with_step, Binding, Kernel};

pub enum Elementwise {
    /// y += b (b repeating).
    Add,
    /// y = silu(y) × b.
    SiluMul,
}

impl Kernel for Elementwise {
    fn key(&self) -> String {
        self.entry().into()
    }

    fn source(&self) -> String {
        with_step(include_str!("../../../../shaders/elementwise.wgsl"))
    }

    fn entry(&self) -> &'static str {
        match self {
            Elementwise::Add => "add",
            Elementwise::SiluMul => "silu_mul",
        }
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[ReadWrite, Read, Uniform, Uniform]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, random};
    use crate::engine::gpu::kernels::{bytes_f32, f32_bytes, storage_init, uniform, Groups, Op, Pool};
    use candle_core::{Device, Tensor};

    /// silu(g) × u against candle_nn's silu, a broadcast bias add and a residual add, over
    /// sizes that leave a partial workgroup. Tolerance 1e-6 of max(|value|, 1).
    async fn elementwise_ops_match_candle() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        for (width, seq) in [(4864usize, 3u32), (100, 1), (37, 7)] {
            let n = width * seq as usize;
            let (g, u) = (random(1, n, 3.0), random(2, n, 1.0));
            let silu = candle_nn::ops::silu(&Tensor::from_vec(g.clone(), n, &Device::Cpu).unwrap()).unwrap().to_vec1::<f32>().unwrap();
            let expect_mul: Vec<f32> = silu.iter().zip(&u).map(|(a, b)| a * b).collect();
            let expect_bias: Vec<f32> = g.iter().enumerate().map(|(i, v)| v + u[i % width]).collect();
            let step = uniform(&gpu.device, &[seq, 0]);
            for (kernel, b_len, expect) in [(Elementwise::SiluMul, n, expect_mul), (Elementwise::Add, width, expect_bias)] {
                let y = storage_init(&gpu.device, &f32_bytes(&g), "y");
                let b = storage_init(&gpu.device, &f32_bytes(&u), "b");
                let shape = uniform(&gpu.device, &[width as u32, b_len as u32, 0]);
                let op = Op::new(&pool, &kernel, &[&y, &b, &shape, &step], Groups::Values { width: width as u32, fixed: 0 });
                let got = bytes_f32(&testing::run(&gpu, &[op], seq, &y).await);
                let scale: Vec<f32> = expect.iter().map(|v| v.abs().max(1.0)).collect();
                assert_close(&got, &expect, &scale, 1e-6, &format!("{} width {width} × {seq}", kernel.entry()));
            }
        }
    }
    testing::both!(elementwise_ops_match_candle);
}
