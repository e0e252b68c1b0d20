//! What the kernel tests share: a device, the feature variants to run, one dispatch list run
//! and read back, seeded inputs and a scaled tolerance check. Natively the tests run on the
//! first adapter (`WGPU_BACKEND=vulkan`: Mesa lavapipe here); in the browser on WebGPU.

use super::{Op, Step};
use crate::engine::gpu::device::{Caps, Gpu, Wanted};
use crate::engine::gpu::weights::{Format, GpuMatrix};
use crate::gguf::TensorType;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// A test without a GPU fails: a missing adapter is a broken setup, not a pass.
pub async fn gpu() -> Gpu {
    match Gpu::open(Wanted::default()).await {
        Ok(g) => {
            log(&format!("kernel tests on {}: f16 {}, subgroups {}", g.adapter, g.caps.f16, g.caps.subgroups));
            g
        }
        Err(e) => panic!("no GPU adapter for the kernel tests (natively install mesa-vulkan-drivers and set WGPU_BACKEND=vulkan): {e}"),
    }
}

fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::log_1(&line.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

/// Every weight format the kernels read: each format with a decoder of its own, and one that
/// is widened to f32 at upload.
pub const TYPES: [TensorType; 14] = [
    TensorType::Q4_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q5_1,
    TensorType::Q8_0,
    TensorType::Q2_K,
    TensorType::Q3_K,
    TensorType::Q4_K,
    TensorType::Q5_K,
    TensorType::Q6_K,
    TensorType::IQ4_NL,
    TensorType::IQ4_XS,
    TensorType::BF16,
    TensorType::F16,
];

/// Plain, and with each optional feature the device has.
pub fn variants(gpu: &Gpu) -> Vec<Caps> {
    let mut v = vec![gpu.with_caps(false, false)];
    if gpu.caps.f16 {
        v.push(gpu.with_caps(true, false));
    }
    if gpu.caps.subgroups {
        v.push(gpu.with_caps(false, true));
        if gpu.caps.f16 {
            v.push(gpu.with_caps(true, true));
        }
    }
    v
}

/// `raw` (`n` rows of `k` values of `ty`) on the GPU with each feature variant, in one part and
/// split into parts of `split_rows` rows (as a small binding limit splits it).
pub async fn uploads(
    gpu: &Gpu,
    ty: TensorType,
    raw: &[u8],
    k: usize,
    n: usize,
    split_rows: u64,
) -> Vec<(Caps, GpuMatrix)> {
    let mut out = Vec::new();
    for caps in variants(gpu) {
        let split = GpuMatrix::row_bytes(Format::of(ty), k) * split_rows;
        for max_binding in [gpu.caps.max_binding, split] {
            let mut g = gpu.clone();
            g.caps = Caps {
                max_binding,
                ..caps
            };
            let w = GpuMatrix::from_bytes(&g, ty, raw, k, n)
                .await
                .expect("uploads");
            out.push((caps, w));
        }
    }
    out
}

/// Records `ops` for `step`, then returns `out`'s bytes.
pub async fn run(gpu: &Gpu, ops: &[Op], step: Step, out: &wgpu::Buffer) -> Vec<u8> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: out.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        for op in ops {
            op.record(&mut pass, step);
        }
    }
    enc.copy_buffer_to_buffer(out, 0, &staging, 0, out.size());
    gpu.queue.submit([enc.finish()]);
    gpu.read(&staging, out.size()).await.expect("kernel ran")
}

pub fn random(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut rng = crate::rng::SeededRng::new(seed);
    (0..n).map(|_| rng.next_normal() * scale).collect()
}

pub(crate) use crate::engine::dense::quantized;

/// |got - expect| ≤ tol × scale for every value (scale: the magnitude the error grows with).
pub fn assert_close(got: &[f32], expect: &[f32], scale: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), expect.len(), "{what}: length");
    let mut worst = (0f32, 0usize);
    for i in 0..got.len() {
        let err = (got[i] - expect[i]).abs() / scale[i].max(1e-6);
        if err > worst.0 || err.is_nan() {
            worst = (err, i);
        }
    }
    let i = worst.1;
    assert!(
        worst.0 <= tol,
        "{what}: value {i} is {} where {} was expected (relative error {} > {tol})",
        got[i],
        expect[i],
        worst.0
    );
}

/// An async kernel test as a native `#[test]` and a browser `#[wasm_bindgen_test]`, in a
/// module of the test's name.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[cfg(not(target_arch = "wasm32"))]
            #[test]
            fn native() {
                crate::block_on(super::$name());
            }

            #[cfg(target_arch = "wasm32")]
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn browser() {
                super::$name().await;
            }
        }
    };
}
pub(crate) use both;
