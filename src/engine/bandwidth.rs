//! The micro-benchmark behind the router's too-weak decision: how many weight bytes per second
//! our own matrix × vector kernels stream on this device, CPU and GPU, on a Q4_0 matrix the size
//! of a small model's FFN projection. Decode speed is that figure over the bytes one token reads.

use web_time::Instant;

use super::gpu::kernels::matmul::{self, Input, Output, Product};
use super::gpu::kernels::{f32_bytes, storage, storage_init, uniform, Pool, Step};
use super::gpu::weights::GpuMatrix;
use super::gpu::Gpu;
use super::EngineError;
use crate::gguf::TensorType;

/// Rows and columns of the probe matrix: 16 MiB of Q4_0, past a phone's or laptop's caches. A
/// server's L3 can still hold it: on the 2-core CI machine it reads at ~22 GB/s, where a 0.5B
/// decode streams ~7 GB/s, so estimates there run optimistic.
const N_OUT: usize = 8192;
const N_IN: usize = 3584;

/// Q4_0 blocks with small scales and every nibble pattern, deterministic.
fn probe_matrix() -> Vec<u8> {
    let blocks = N_OUT * N_IN / 32;
    let mut raw = Vec::with_capacity(blocks * 18);
    for b in 0..blocks {
        raw.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        raw.extend((0..16).map(|i| ((b * 7 + i * 13) % 256) as u8));
    }
    raw
}

/// CPU matvec weight bytes per second, over at least `min_ms` of work.
pub fn cpu_bytes_per_s(min_ms: f64) -> Result<f64, EngineError> {
    let raw = probe_matrix();
    let m = super::cpu::probe_matmul(TensorType::Q4_0, &raw, N_IN, N_OUT)?;
    let x = vec![0.5f32; N_IN];
    m(&x, 1)?;
    let t = Instant::now();
    let mut runs = 0;
    while runs < 3 || (t.elapsed().as_secs_f64() * 1000.0) < min_ms {
        m(&x, 1)?;
        runs += 1;
    }
    Ok(raw.len() as f64 * runs as f64 / t.elapsed().as_secs_f64())
}

/// Our CPU product of `m` activation rows with an `n_out` × `n_in` matrix of `ty` (its scales
/// 0.01, its quants a fixed pattern), over at least `min_ms`: weight bytes per second and
/// multiply-adds per second. For the kernel table of scripts/bench_web.mjs and bench_kernels.
pub fn cpu_matmul_rate(
    ty: TensorType,
    n_in: usize,
    n_out: usize,
    m: usize,
    min_ms: f64,
) -> Result<(f64, f64), EngineError> {
    let blocks = (n_out * n_in).div_ceil(ty.block_size);
    let size = blocks * ty.type_size;
    let mut raw: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    // Every f16 a block starts with (the scale; Q4_1's minimum after it) a small number, so no
    // product runs on infinities or subnormals.
    let halves = if [TensorType::Q4_1.id, TensorType::Q5_1.id].contains(&ty.id) {
        2
    } else {
        1
    };
    for block in raw.chunks_exact_mut(ty.type_size) {
        for h in 0..halves {
            block[2 * h..2 * h + 2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        }
    }
    let mat = super::cpu::probe_matmul(ty, &raw, n_in, n_out)?;
    let x: Vec<f32> = (0..m * n_in)
        .map(|i| ((i % 17) as f32 - 8.0) * 0.1)
        .collect();
    // Warm-up: a browser runs a function's first calls on baseline code until its optimised
    // code is ready.
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < 0.1 {
        mat(&x, m)?;
    }
    let t = Instant::now();
    let mut runs = 0;
    while runs < 3 || (t.elapsed().as_secs_f64() * 1000.0) < min_ms {
        mat(&x, m)?;
        runs += 1;
    }
    let s = t.elapsed().as_secs_f64();
    Ok((
        size as f64 * runs as f64 / s,
        (m * n_in * n_out) as f64 * runs as f64 / s,
    ))
}

/// Bytes per second one thread reads from a buffer of `bytes` (summed as u64s, so the compiler
/// vectorises it), over at least `min_ms`: the bandwidth a matvec streaming that much could reach.
pub fn read_bytes_per_s(bytes: usize, min_ms: f64) -> f64 {
    #[inline(never)]
    fn sum(buf: &[u64]) -> u64 {
        buf.iter().fold(0u64, |a, &v| a.wrapping_add(v))
    }
    let buf: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut sink = 0u64;
    // Warm-up, as above: one pass per call, so later calls run the optimised code.
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < 0.1 {
        sink = sink.wrapping_add(sum(&buf));
    }
    let t = Instant::now();
    let mut runs = 0;
    while runs < 3 || (t.elapsed().as_secs_f64() * 1000.0) < min_ms {
        sink = sink.wrapping_add(sum(&buf));
        runs += 1;
    }
    std::hint::black_box(sink);
    (buf.len() * 8) as f64 * runs as f64 / t.elapsed().as_secs_f64()
}

/// GPU matvec weight bytes per second: `runs` dispatches in one submission, timed to readback.
pub async fn gpu_bytes_per_s(gpu: &Gpu, runs: u32) -> Result<f64, EngineError> {
    let raw = probe_matrix();
    let w = GpuMatrix::from_bytes(gpu, TensorType::Q4_0, &raw, N_IN, N_OUT).await?;
    let pool = Pool::new(&gpu.device);
    let x = storage_init(&gpu.device, &f32_bytes(&vec![0.5f32; N_IN]), "x");
    let y = storage(&gpu.device, (N_OUT * 4) as u64, "y");
    let one = Step { seq: 1, start: 0 };
    let step = uniform(&gpu.device, &one);
    let product = Product {
        w: &w,
        x: &x,
        y: &y,
        step: &step,
        input: Input::Plain,
        output: Output::STORE,
        fixed: 0,
        last: false,
    };
    let ops = matmul::dispatches(&pool, gpu.caps, &product);
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let time = |n: u32| {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for _ in 0..n {
                ops.iter().for_each(|op| {
                    op.record(&mut pass, one);
                });
            }
        }
        enc.copy_buffer_to_buffer(&y, 0, &staging, 0, 4);
        gpu.queue.submit([enc.finish()]);
        Instant::now()
    };
    // Warm-up: pipelines compiled, buffers resident.
    let _ = time(2);
    gpu.read(&staging, 4).await?;
    let t = time(runs);
    gpu.read(&staging, 4).await?;
    Ok(raw.len() as f64 * runs as f64 / t.elapsed().as_secs_f64())
}
