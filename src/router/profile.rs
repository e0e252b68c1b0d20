//! Is this device fast enough for the local model? A profile of what the browser reports (WebGPU
//! adapter and limits, memory, cores, storage) and a short measured matrix-vector bandwidth,
//! turned into an estimated decode speed for one model and compared with the configured minimum.

use serde::{Deserialize, Serialize};

/// What the probe found; measured once per device and model, then cached by the app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceProfile {
    pub webgpu: Option<GpuProfile>,
    /// `navigator.deviceMemory` (GiB; browsers round it and cap it at 8).
    pub device_memory_gb: Option<f64>,
    pub hardware_concurrency: u32,
    pub storage_quota_bytes: Option<f64>,
    pub storage_usage_bytes: Option<f64>,
    /// Weight bytes per second our CPU matvec reached in the micro-benchmark.
    pub cpu_bytes_per_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GpuProfile {
    pub adapter: String,
    pub max_storage_binding_bytes: f64,
    pub max_buffer_bytes: f64,
    pub shader_f16: bool,
    /// Weight bytes per second our GPU matvec reached in the micro-benchmark.
    pub bytes_per_s: Option<f64>,
}

/// What the model asks of the device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelNeeds {
    pub file_bytes: f64,
    /// Weight bytes one decode step reads (about the file size for dense models).
    pub bytes_per_token: f64,
    /// Already in IndexedDB: no storage needed.
    pub stored: bool,
}

/// The verdict, with the estimate behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "verdict"
)]
pub enum Capability {
    Capable {
        backend: String,
        tokens_per_s: f64,
    },
    TooWeak {
        reason: String,
        tokens_per_s: Option<f64>,
    },
}

impl Capability {
    pub fn is_capable(&self) -> bool {
        matches!(self, Capability::Capable { .. })
    }
}

/// Decode also reads the KV cache and runs attention and sampling: the matvec bandwidth is
/// reached on roughly this share of a step.
const STEP_EFFICIENCY: f64 = 0.8;
/// The model may use at most this share of the device's memory (the page, the browser and the
/// system need the rest).
const MEMORY_SHARE: f64 = 0.5;

pub fn assess(profile: &DeviceProfile, model: &ModelNeeds, min_tokens_per_s: f64) -> Capability {
    let too_weak = |reason: String, est: Option<f64>| Capability::TooWeak {
        reason,
        tokens_per_s: est,
    };
    if !model.stored {
        if let (Some(quota), usage) = (
            profile.storage_quota_bytes,
            profile.storage_usage_bytes.unwrap_or(0.0),
        ) {
            if quota - usage < model.file_bytes {
                return too_weak(
                    format!(
                        "storage: {:.0} MiB free, the model needs {:.0} MiB",
                        (quota - usage) / 1048576.0,
                        model.file_bytes / 1048576.0
                    ),
                    None,
                );
            }
        }
    }
    if let Some(gb) = profile.device_memory_gb {
        let room = gb * (1u64 << 30) as f64 * MEMORY_SHARE;
        if model.file_bytes > room {
            return too_weak(
                format!(
                    "memory: the model needs {:.1} GiB, about {gb} GiB reported",
                    model.file_bytes / (1u64 << 30) as f64
                ),
                None,
            );
        }
    }
    let estimate =
        |bytes_per_s: f64| bytes_per_s * STEP_EFFICIENCY / model.bytes_per_token.max(1.0);
    let gpu = profile
        .webgpu
        .as_ref()
        .and_then(|g| g.bytes_per_s)
        .map(|b| ("gpu", estimate(b)));
    let cpu = profile.cpu_bytes_per_s.map(|b| ("cpu", estimate(b)));
    let best = [gpu, cpu]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match best {
        None => too_weak("not measured: no micro-benchmark figure".into(), None),
        Some((backend, t)) if t >= min_tokens_per_s => Capability::Capable { backend: backend.into(), tokens_per_s: t },
        Some((backend, t)) => too_weak(format!("speed: about {t:.1} tok/s on the {backend}, under the {min_tokens_per_s} tok/s minimum"), Some(t)),
    }
}
