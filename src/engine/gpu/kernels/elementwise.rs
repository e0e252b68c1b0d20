//! In-place bias add over each token's row (the Q, K and V biases of Qwen2).

use super::{with_step, Binding, Kernel};

/// y += b, b repeating every `b_len` values.
pub struct Add;

/// The `Shape` uniform (`shaders/elementwise.wgsl`).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Shape {
    /// Values per row.
    pub width: u32,
    /// `b` repeats every this many values.
    pub b_len: u32,
    /// A fixed row count; 0: the step's token count.
    pub fixed: u32,
}

impl Kernel for Add {
    fn key(&self) -> String {
        "add".into()
    }

    fn source(&self) -> String {
        with_step(include_str!("../../../../shaders/elementwise.wgsl"))
    }

    fn entry(&self) -> &'static str {
        "add"
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        &[ReadWrite, Read, Uniform, Uniform]
    }

    fn class(&self) -> &'static str {
        "elementwise"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gpu::kernels::testing::{self, assert_close, random};
    use crate::engine::gpu::kernels::{
        bytes_f32, f32_bytes, storage_init, uniform, Groups, Op, Pool, Step,
    };

    /// A bias broadcast over each token's row, over sizes that leave a partial workgroup.
    /// Tolerance 1e-6 of max(|value|, 1).
    async fn bias_add_matches_cpu() {
        let gpu = testing::gpu().await;
        let pool = Pool::new(&gpu.device);
        for (width, seq) in [(4864usize, 3u32), (100, 1), (37, 7)] {
            let n = width * seq as usize;
            let (y0, b) = (random(1, n, 3.0), random(2, width, 1.0));
            let expect: Vec<f32> = y0
                .iter()
                .enumerate()
                .map(|(i, v)| v + b[i % width])
                .collect();
            let step = uniform(&gpu.device, &Step { seq, start: 0 });
            let y = storage_init(&gpu.device, &f32_bytes(&y0), "y");
            let bb = storage_init(&gpu.device, &f32_bytes(&b), "b");
            let shape = uniform(
                &gpu.device,
                &Shape {
                    width: width as u32,
                    b_len: width as u32,
                    fixed: 0,
                },
            );
            let op = Op::new(
                &pool,
                &Add,
                &[&y, &bb, &shape, &step],
                Groups::Values {
                    width: width as u32,
                    fixed: 0,
                },
            );
            let got = bytes_f32(&testing::run(&gpu, &[op], seq, &y).await);
            let scale: Vec<f32> = expect.iter().map(|v| v.abs().max(1.0)).collect();
            assert_close(
                &got,
                &expect,
                &scale,
                1e-6,
                &format!("width {width} × {seq}"),
            );
        }
    }
    testing::both!(bias_add_matches_cpu);
}
