//! Our CPU matmul kernels against the memory-bandwidth limit, one thread or RAYON_NUM_THREADS:
//! weight bytes streamed per second by a decode matvec (one activation row) and a prefill tile
//! (16 rows), on a matrix far past the caches (Qwen2.5-0.5B's 151 936-row output head) and on
//! one that fits in L2 (512 rows), next to a plain read of a buffer of the same size (the machine's
//! streaming bandwidth). One JSON line per format.
//!
//! cargo run --release --example bench_kernels

use std::time::Instant;

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use candlelight::engine::cpu::probe_matmul;
use candlelight::gguf::TensorType;

fn seconds(min_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    let (t, mut runs) = (Instant::now(), 0u32);
    while runs < 3 || t.elapsed().as_secs_f64() < min_s {
        f();
        runs += 1;
    }
    t.elapsed().as_secs_f64() / runs as f64
}

/// Bytes per second of summing `bytes` as u64 words (the compiler vectorizes it).
fn read_bandwidth(bytes: usize) -> f64 {
    let v: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let s = seconds(0.5, || {
        std::hint::black_box(v.iter().fold(0u64, |a, &b| a.wrapping_add(b)));
    });
    bytes as f64 / s
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for ty in [
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::Q8_0,
        TensorType::Q4_K,
        TensorType::Q6_K,
    ] {
        let mut line = vec![format!("\"type\":\"{}\"", ty.name)];
        // Rows of 896 (Qwen2.5-0.5B's width) for the 32-value blocks, 1024 for the K-quants' 256.
        let n_in = if ty.block_size == 256 { 1024 } else { 896 };
        line.push(format!("\"n_in\":{n_in}"));
        for (label, n_out) in [("big", 151_936usize), ("l2", 512)] {
            let mut rng = candlelight::rng::SeededRng::new(1);
            let w: Vec<f32> = (0..n_out * n_in)
                .map(|_| rng.next_normal() * 0.05)
                .collect();
            let t = Tensor::from_vec(w, (n_out, n_in), &Device::Cpu)?;
            let raw = QTensor::quantize(&t, ty.dtype.ok_or("no candle type")?)?
                .data()?
                .to_vec();
            let mm = probe_matmul(ty, &raw, n_in, n_out)?;
            for m in [1usize, 16] {
                let x: Vec<f32> = (0..m * n_in).map(|_| rng.next_normal()).collect();
                let s = seconds(0.5, || {
                    std::hint::black_box(mm(&x, m).unwrap());
                });
                line.push(format!(
                    "\"{label}_m{m}_gb_s\":{:.2}",
                    raw.len() as f64 / s / 1e9
                ));
            }
            if label == "big" {
                line.push(format!(
                    "\"read_gb_s\":{:.2}",
                    read_bandwidth(raw.len()) / 1e9
                ));
            }
        }
        println!("{{{}}}", line.join(","));
    }
    Ok(())
}
