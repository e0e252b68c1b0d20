//! The device profile for the router's too-weak decision: what the browser reports, plus the
//! measured CPU and GPU matvec bandwidth ([`crate::engine::bandwidth`]).

use js_sys::Reflect;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::to_js;
use crate::engine::bandwidth::{cpu_bytes_per_s, gpu_bytes_per_s};
use crate::engine::gpu::{Gpu, Wanted};
use crate::openai::ApiError;
use crate::router::{assess, DeviceProfile, GpuProfile, ModelNeeds};

fn navigator(key: &str) -> JsValue {
    Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &key.into()))
        .unwrap_or(JsValue::UNDEFINED)
}

/// Measures this device (a fraction of a second): WebGPU adapter and limits, memory, cores,
/// storage, and CPU and GPU matvec bandwidth.
#[wasm_bindgen(js_name = probeDevice)]
pub async fn probe_device() -> Result<JsValue, JsValue> {
    let mut profile = DeviceProfile {
        device_memory_gb: navigator("deviceMemory").as_f64(),
        hardware_concurrency: navigator("hardwareConcurrency").as_f64().unwrap_or(1.0) as u32,
        ..DeviceProfile::default()
    };
    if let Ok(estimate) = Reflect::get(&navigator("storage"), &"estimate".into())
        .and_then(|f| f.dyn_into::<js_sys::Function>())
    {
        if let Ok(p) = estimate.call0(&navigator("storage")) {
            if let Ok(e) = JsFuture::from(js_sys::Promise::resolve(&p)).await {
                profile.storage_quota_bytes = Reflect::get(&e, &"quota".into())
                    .ok()
                    .and_then(|v| v.as_f64());
                profile.storage_usage_bytes = Reflect::get(&e, &"usage".into())
                    .ok()
                    .and_then(|v| v.as_f64());
            }
        }
    }
    if let Ok(gpu) = Gpu::open(Wanted::default()).await {
        let bytes_per_s = gpu_bytes_per_s(&gpu, 20).await.ok();
        profile.webgpu = Some(GpuProfile {
            adapter: gpu.adapter.clone(),
            max_storage_binding_bytes: gpu.caps.max_binding as f64,
            max_buffer_bytes: gpu.caps.max_binding as f64,
            shader_f16: gpu.caps.f16,
            bytes_per_s,
        });
        gpu.device.destroy();
    }
    profile.cpu_bytes_per_s = cpu_bytes_per_s(100.0).ok();
    to_js(&profile)
}

/// Capable or too weak, for a model (`fileBytes`, `bytesPerToken`, `stored`) and a minimum speed.
#[wasm_bindgen(js_name = assessDevice)]
pub fn assess_device(
    profile: JsValue,
    model: JsValue,
    min_tokens_per_s: f64,
) -> Result<JsValue, JsValue> {
    let bad = |e: serde_wasm_bindgen::Error| JsValue::from(ApiError::invalid(e.to_string()));
    let profile: DeviceProfile = serde_wasm_bindgen::from_value(profile).map_err(bad)?;
    let model: ModelNeeds = serde_wasm_bindgen::from_value(model).map_err(bad)?;
    to_js(&assess(&profile, &model, min_tokens_per_s))
}

/// The longest a kernel benchmark runs, whatever the page asks.
const MAX_BENCH_MS: f64 = 10_000.0;

/// Our CPU kernels on a `typeName` matrix (`q4_0`, `q8_0`, …) of `nOut` × `nIn` against `rows`
/// activation rows, in this thread, over at least `minMs`: `{ bytesPerS, macsPerS }`, and
/// `readBytesPerS`, how fast this thread reads a buffer of the matrix's size. For
/// scripts/bench_web.mjs's kernel table.
#[wasm_bindgen(js_name = benchKernel)]
pub fn bench_kernel(
    type_name: &str,
    n_in: usize,
    n_out: usize,
    rows: usize,
    min_ms: f64,
) -> Result<JsValue, JsValue> {
    use crate::engine::bandwidth::{cpu_matmul_rate, read_bytes_per_s};
    let ty = crate::gguf::TensorType::from_name(type_name)
        .ok_or_else(|| ApiError::invalid(format!("no tensor type {type_name:?}")))?;
    // The matrix, and the activation and output rows (rows × (n_in + n_out) floats), bounded
    // before anything is allocated.
    let values = n_in.checked_mul(n_out).filter(|&v| v <= 1 << 28);
    let floats = n_in
        .checked_add(n_out)
        .and_then(|w| w.checked_mul(rows))
        .filter(|&f| f <= 1 << 24);
    if n_in == 0
        || n_out == 0
        || rows == 0
        || !n_in.is_multiple_of(ty.block_size)
        || values.is_none()
        || floats.is_none()
    {
        return Err(ApiError::invalid(
            "whole blocks per row, at most 2^28 weights and 2^24 activation and output values",
        )
        .into());
    }
    let min_ms = min_ms.clamp(0.0, MAX_BENCH_MS);
    let (bytes, macs) = cpu_matmul_rate(ty, n_in, n_out, rows, min_ms).map_err(ApiError::from)?;
    let read = read_bytes_per_s(n_in * n_out / ty.block_size * ty.type_size, min_ms);
    let out = js_sys::Object::new();
    for (k, v) in [
        ("bytesPerS", bytes),
        ("macsPerS", macs),
        ("readBytesPerS", read),
    ] {
        let _ = Reflect::set(&out, &k.into(), &v.into());
    }
    Ok(out.into())
}

/// Multiply-adds per second of this build's integer dot at its best, in this thread, on values
/// in registers (nothing loaded, unpacked or scaled): the ceiling of our wasm tiles here. For
/// scripts/bench_web.mjs's kernel table.
#[wasm_bindgen(js_name = benchPeak)]
pub fn bench_peak(min_ms: f64) -> f64 {
    crate::engine::cpu::peak_macs_per_s(min_ms.clamp(0.0, MAX_BENCH_MS)).unwrap_or(f64::NAN)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    /// Sizes a page asks for are checked before anything is allocated: a matrix past 2^28
    /// weights, activation rows past 2^24 values, partial blocks and unknown types are errors.
    #[wasm_bindgen_test::wasm_bindgen_test]
    fn kernel_benchmarks_refuse_sizes_before_allocating() {
        use super::bench_kernel;
        assert!(bench_kernel("q4_0", 1 << 20, 1 << 20, 1, 1.0).is_err());
        assert!(bench_kernel("q4_0", 1 << 18, 1 << 10, 512, 1.0).is_err());
        assert!(bench_kernel("q4_0", usize::MAX, 2, 1, 1.0).is_err());
        assert!(bench_kernel("q4_0", 33, 8, 1, 1.0).is_err());
        assert!(bench_kernel("nope", 32, 8, 1, 1.0).is_err());
        assert!(bench_kernel("Q4_0", 64, 8, 2, 1.0).is_ok());
    }
}
