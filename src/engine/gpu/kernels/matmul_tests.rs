use super::*;
use crate::engine::gpu::kernels::testing::{self, assert_close, quantized, random};
use crate::engine::gpu::kernels::{bytes_f32, f32_bytes, storage, storage_init, Step};
use crate::engine::gpu::Gpu;
use crate::gguf::TensorType;
use candle_core::{Device, Tensor};

/// The input a prologue makes of `x` (`m` rows of `k`), in f64.
enum Made<'a> {
    Plain,
    Norm(&'a [f32], f32),
    Gated(&'a [f32]),
}

fn made_input(x: &[f32], k: usize, made: &Made) -> Vec<f64> {
    match made {
        Made::Plain => x.iter().map(|&v| v as f64).collect(),
        Made::Norm(w, eps) => x
            .chunks(k)
            .flat_map(|row| {
                let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / k as f64;
                let inv = 1.0 / (ms + *eps as f64).sqrt();
                row.iter()
                    .zip(w.iter())
                    .map(move |(&v, &w)| v as f64 * inv * w as f64)
                    .collect::<Vec<_>>()
            })
            .collect(),
        Made::Gated(up) => {
            let t = Tensor::from_vec(x.to_vec(), x.len(), &Device::Cpu).unwrap();
            let s = candle_nn::ops::silu(&t).unwrap().to_vec1::<f32>().unwrap();
            s.iter()
                .zip(up.iter())
                .map(|(a, b)| (a * b) as f64)
                .collect()
        }
    }
}

/// Row sums input · wᵀ and their |·| scale, `m` × `n`.
fn products(input: &[f64], w: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut sums, mut scale) = (vec![0f64; m * n], vec![0f64; m * n]);
    for i in 0..m {
        for j in 0..n {
            for t in 0..k {
                let p = input[i * k + t] * w[j * k + t] as f64;
                sums[i * n + j] += p;
                scale[i * n + j] += p.abs();
            }
        }
    }
    (sums, scale)
}

fn tolerance(caps: Caps) -> f32 {
    if caps.f16 {
        4e-3
    } else {
        1e-4
    }
}

async fn product(gpu: &Gpu, pool: &Pool, caps: Caps, p: &Product<'_>, step: Step) -> Vec<f32> {
    let ops = dispatches(pool, caps, p);
    bytes_f32(&testing::run(gpu, &ops, step, p.y).await)
}

/// Every format, decode and prefill tiles (and decode's matrix × vector for the formats that
/// have one, with 4 and 16 lanes a row), shapes off the tile sizes, each variant the device
/// has, in one part and split in parts; in turn a plain input written, a gated one
/// (silu(x) × up) added to what y held, and an RMS-normalized one written with a bias into
/// some columns of wider rows: GPU result vs f64 sums over candle's dequantized weights and
/// candle_nn's silu. Tolerance: 1e-4 of the row's |x|·|w| scale (f32 sums in another order),
/// 4e-3 with f16 dequantization.
async fn matmul_matches_cpu_reference() {
    let gpu = testing::gpu().await;
    let pool = Pool::new(&gpu.device);
    let mut seed = 1;
    for ty in testing::TYPES {
        let k_step = if ty.block_size == 256 { 256 } else { 32 };
        for (k_blocks, n, m) in [
            (2usize, 7usize, 1u32),
            (3, 13, 5),
            (1, 64, 9),
            (4, 3, 17),
            (40, 19, 1),
        ] {
            // The long rows are for the matrix × vector's lanes (32-value formats); 256-value
            // formats keep them short, for the browser's software GPU.
            let k = k_blocks.min(if k_step == 256 { 4 } else { 40 }) * k_step;
            seed += 1;
            let mode = seed % 3;
            let (raw, wd) = quantized(random(seed, n * k, 0.05), n, k, ty);
            let x = random(seed + 100, m as usize * k, 1.0);
            let up = random(seed + 200, m as usize * k, 1.0);
            let norm_w: Vec<f32> = random(seed + 400, k, 0.3).iter().map(|v| 1.0 + v).collect();
            // Rows of `stride` values, this product's in columns `col0..col0 + n`.
            let (col0, stride) = if mode == 2 { (3, n + 5) } else { (0, n) };
            let before = random(seed + 300, m as usize * stride, 1.0);
            let bias = random(seed + 500, stride, 1.0);
            let made = match mode {
                0 => Made::Plain,
                1 => Made::Gated(&up),
                _ => Made::Norm(&norm_w, 1e-6),
            };
            let (sums, scale) = products(&made_input(&x, k, &made), &wd, m as usize, n, k);
            let mut expect = before.clone();
            let mut scales = vec![1f32; expect.len()];
            for i in 0..m as usize {
                for j in 0..n {
                    let at = i * stride + col0 + j;
                    expect[at] = match mode {
                        0 => sums[i * n + j],
                        1 => before[at] as f64 + sums[i * n + j],
                        _ => sums[i * n + j] + bias[col0 + j] as f64,
                    } as f32;
                    scales[at] = (scale[i * n + j] as f32).max(1e-3);
                }
            }
            for (caps, w) in testing::uploads(&gpu, ty, &raw, k, n, 2).await {
                let buffer = |v: &[f32], label| storage_init(&gpu.device, &f32_bytes(v), label);
                let (xb, ub, nb, bb) = (
                    buffer(&x, "x"),
                    buffer(&up, "up"),
                    buffer(&norm_w, "norm"),
                    buffer(&bias, "bias"),
                );
                let y = buffer(&before, "y");
                let step = Step { seq: m, start: 0 };
                let sb = uniform(&gpu.device, &step);
                let (input, output) = match mode {
                    0 => (Input::Plain, Output::STORE),
                    1 => (Input::Gated { up: &ub }, Output::ADD),
                    _ => (
                        Input::Norm {
                            weight: &nb,
                            eps: 1e-6,
                        },
                        Output::Rows {
                            col0,
                            stride,
                            accumulate: false,
                            bias: Some(&bb),
                        },
                    ),
                };
                let p = Product::new(&w, [&xb, &y, &sb], input, output);
                let got = product(&gpu, &pool, caps, &p, step).await;
                let key = MatMul::for_rows(&p, m, caps).key();
                let what = format!(
                    "{} k={k} n={n} m={m} parts={} {key}",
                    ty.name,
                    w.parts.len()
                );
                assert_close(&got, &expect, &scales, tolerance(caps), &what);
            }
        }
    }
}
testing::both!(matmul_matches_cpu_reference);

/// Matrices fused into one pair of buffers (Q, K and V; gate and up), in format mixes the
/// K-quant files ship (Q4_K with a Q6_K slot), 32-value formats with an odd count of blocks per
/// row (f16 scale pairs that would straddle slots) and a widened one, and one format in all
/// slots (decode's matrix × vector): the fused product
/// equals each source's product. Normalized input with a bias into all columns (the Q·K·V
/// use), and gate-up pairs combined as silu(gate) × up; decode and prefill; and the output
/// head's use, the step's last row only. Tolerance as above.
async fn fused_matrices_match_their_sources() {
    use TensorType as T;
    let gpu = testing::gpu().await;
    let pool = Pool::new(&gpu.device);
    let mixes: [(&[TensorType], usize); 7] = [
        (&[T::Q4_K, T::Q4_K, T::Q6_K], 256),
        (&[T::Q4_0, T::Q8_0, T::F16], 96),
        (&[T::Q5_0, T::IQ4_NL, T::Q4_1], 96),
        (&[T::Q4_K, T::Q5_K], 256),
        // One format in every slot: decode takes the matrix × vector kernel.
        (&[T::Q4_0, T::Q4_0, T::Q4_0], 96),
        (&[T::Q4_1, T::Q4_1, T::Q4_1], 640),
        (&[T::Q8_0, T::Q8_0], 96),
    ];
    for (seed, (types, k)) in mixes.into_iter().enumerate() {
        let seed = seed as u64 * 10;
        let rows = [7usize, 5, 6];
        let sources: Vec<(Vec<u8>, Vec<f32>, usize)> = types
            .iter()
            .zip(rows)
            .enumerate()
            .map(|(i, (ty, n))| {
                // Gate and up (two slots) have one row count.
                let n = if types.len() == 2 { 6 } else { n };
                let (raw, wd) = quantized(random(seed + i as u64, n * k, 0.05), n, k, *ty);
                (raw, wd, n)
            })
            .collect();
        let n: usize = sources.iter().map(|s| s.2).sum();
        let wd: Vec<f32> = sources.iter().flat_map(|s| s.1.clone()).collect();
        for caps in testing::variants(&gpu) {
            let mut g = gpu.clone();
            g.caps = caps;
            let mut uploaded = Vec::new();
            for ((raw, _, rows), ty) in sources.iter().zip(types) {
                uploaded.push(GpuMatrix::from_bytes(&g, *ty, raw, k, *rows).await.unwrap());
            }
            let refs: Vec<&GpuMatrix> = uploaded.iter().collect();
            let fused = GpuMatrix::fuse(&g, &refs).expect("fuses");
            assert_eq!(fused.slots.len(), types.len());
            for m in [1u32, 5] {
                let x = random(seed + 7 + m as u64, m as usize * k, 1.0);
                let norm_w: Vec<f32> = random(seed + 8, k, 0.3).iter().map(|v| 1.0 + v).collect();
                let bias = random(seed + 9, n, 1.0);
                let (sums, scale) = products(
                    &made_input(&x, k, &Made::Norm(&norm_w, 1e-5)),
                    &wd,
                    m as usize,
                    n,
                    k,
                );
                let buffer = |v: &[f32], label| storage_init(&gpu.device, &f32_bytes(v), label);
                let (xb, nb, bb) = (buffer(&x, "x"), buffer(&norm_w, "norm"), buffer(&bias, "b"));
                let step = Step { seq: m, start: 0 };
                let sb = uniform(&gpu.device, &step);
                let input = Input::Norm {
                    weight: &nb,
                    eps: 1e-5,
                };
                let what = format!(
                    "{types:?} k={k} m={m} f16 {} sg {}",
                    caps.f16, caps.subgroups
                );
                if types.len() == 2 {
                    let half = n / 2;
                    let y = storage(&gpu.device, (m as usize * half * 4) as u64, "y");
                    let p = Product::new(&fused, [&xb, &y, &sb], input, Output::Pairs);
                    let got = product(&gpu, &pool, caps, &p, step).await;
                    let (mut expect, mut scales) = (Vec::new(), Vec::new());
                    for i in 0..m as usize {
                        for j in 0..half {
                            let (gate, up) = (sums[i * n + j], sums[i * n + half + j]);
                            expect.push((gate / (1.0 + (-gate).exp()) * up) as f32);
                            let sc = scale[i * n + j].max(1.0) * scale[i * n + half + j].max(1.0);
                            scales.push(sc as f32);
                        }
                    }
                    assert_close(
                        &got,
                        &expect,
                        &scales,
                        tolerance(caps),
                        &format!("{what} pairs"),
                    );
                    continue;
                }
                let y = storage(&gpu.device, (m as usize * n * 4) as u64, "y");
                let output = Output::Rows {
                    col0: 0,
                    stride: 0,
                    accumulate: false,
                    bias: Some(&bb),
                };
                let p = Product::new(&fused, [&xb, &y, &sb], input, output);
                let got = product(&gpu, &pool, caps, &p, step).await;
                let expect: Vec<f32> = (0..m as usize * n)
                    .map(|at| (sums[at] + bias[at % n] as f64) as f32)
                    .collect();
                let scales: Vec<f32> = scale.iter().map(|s| s.max(1e-3) as f32).collect();
                assert_close(
                    &got,
                    &expect,
                    &scales,
                    tolerance(caps),
                    &format!("{what} rows"),
                );
                // The head: one output row, from the step's last input row.
                let last = storage(&gpu.device, (n * 4) as u64, "last");
                let p = Product {
                    fixed: 1,
                    last: true,
                    ..Product::new(&fused, [&xb, &last, &sb], input, Output::STORE)
                };
                let got = product(&gpu, &pool, caps, &p, step).await;
                let row = (m as usize - 1) * n;
                let expect: Vec<f32> = sums[row..row + n].iter().map(|&v| v as f32).collect();
                assert_close(
                    &got,
                    &expect,
                    &scales[row..row + n],
                    tolerance(caps),
                    &format!("{what} last row"),
                );
            }
        }
    }
}
testing::both!(fused_matrices_match_their_sources);
