//! The GPU itself: adapter and device with the features and limits a model needs, loss and
//! error tracking, and reading results back (blocking natively, awaited in the browser).

use std::sync::{Arc, Mutex};

use super::GpuError;

/// What the device offers that the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `shader-f16`: dequantization math in f16.
    pub f16: bool,
    /// Subgroup operations: reductions without shared memory.
    pub subgroups: bool,
    /// The largest buffer a shader may bind; bigger matrices are split by rows.
    pub max_binding: u64,
    /// Timestamp queries, for profiles only (asked for with [`Wanted::timestamps`]).
    pub timestamps: Timestamps,
    /// The adapter's largest subgroup where it says (0: unknown, as in browsers).
    pub subgroup_size: u32,
    /// The most threads one workgroup may have.
    pub max_invocations: u32,
}

/// Where the device can write timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    None,
    /// At the start and end of a pass (WebGPU's `timestamp-query`).
    Passes,
    /// Anywhere inside a pass (native).
    Inside,
}

/// Which optional features to turn on when the adapter has them.
#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub f16: bool,
    pub subgroups: bool,
    /// The biggest buffer the model would bind unsplit; the device is asked for no more.
    pub binding: u64,
    /// Timestamp queries, for profiling.
    pub timestamps: bool,
}

impl Default for Wanted {
    fn default() -> Self {
        Self {
            f16: true,
            subgroups: true,
            binding: u64::MAX,
            timestamps: false,
        }
    }
}

/// What went wrong with the device, as its callbacks reported it.
#[derive(Default)]
struct Failures {
    lost: Option<String>,
    error: Option<GpuError>,
}

/// An open device and its queue.
#[derive(Clone)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Caps,
    pub adapter: String,
    failures: Arc<Mutex<Failures>>,
}

impl Gpu {
    /// Opens the first adapter (`WGPU_BACKEND` picks natively; WebGPU in the browser).
    pub async fn open(wanted: Wanted) -> Result<Self, GpuError> {
        #[cfg(not(target_arch = "wasm32"))]
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        #[cfg(target_arch = "wasm32")]
        let desc = wgpu::InstanceDescriptor {
            backends: wgpu::Backends::BROWSER_WEBGPU,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        };
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Unavailable(e.to_string()))?;
        let offered = adapter.features();
        let mut features = wgpu::Features::empty();
        if wanted.f16 && offered.contains(wgpu::Features::SHADER_F16) {
            features |= wgpu::Features::SHADER_F16;
        }
        // wgpu does not request subgroups from browsers (gfx-rs/wgpu#10146), so this stays off there.
        if wanted.subgroups
            && offered.contains(wgpu::Features::SUBGROUP)
            && !cfg!(target_arch = "wasm32")
        {
            features |= wgpu::Features::SUBGROUP;
        }
        let mut timestamps = Timestamps::None;
        if wanted.timestamps && offered.contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
            timestamps = Timestamps::Passes;
            let inside = wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
            if offered.contains(inside) {
                features |= inside;
                timestamps = Timestamps::Inside;
            }
        }
        let top = adapter.limits();
        let binding = (top.max_storage_buffer_binding_size as u64).min(wanted.binding.max(1 << 20));
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: binding as _,
            max_buffer_size: top.max_buffer_size.min(binding.max(1 << 20)),
            max_storage_buffers_per_shader_stage: 8,
            max_compute_workgroup_storage_size: 16384,
            ..wgpu::Limits::default()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("candlelight"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Unavailable(e.to_string()))?;
        let failures = Arc::new(Mutex::new(Failures::default()));
        let h = failures.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut h) = h.lock() {
                h.lost = Some(format!("{reason:?}: {message}"));
            }
        });
        let h = failures.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut h) = h.lock() {
                h.error.get_or_insert(match e {
                    wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
                    other => GpuError::Validation(other.to_string()),
                });
            }
        }));
        let info = adapter.get_info();
        Ok(Self {
            device,
            queue,
            caps: Caps {
                f16: features.contains(wgpu::Features::SHADER_F16),
                subgroups: features.contains(wgpu::Features::SUBGROUP),
                max_binding: limits.max_storage_buffer_binding_size as u64,
                timestamps,
                subgroup_size: match cfg!(target_arch = "wasm32") {
                    true => 0,
                    false => info.subgroup_max_size,
                },
                max_invocations: limits.max_compute_invocations_per_workgroup,
            },
            adapter: match (info.name.is_empty(), info.vendor) {
                // Browsers hide adapter names unless asked.
                (true, _) => format!("{:?}", info.backend),
                (false, _) => format!("{} ({:?}, {})", info.name, info.backend, info.driver),
            },
            failures,
        })
    }

    /// The same device with fewer features (tests run every kernel with and without them).
    pub fn with_caps(&self, f16: bool, subgroups: bool) -> Caps {
        Caps {
            f16: self.caps.f16 && f16,
            subgroups: self.caps.subgroups && subgroups,
            ..self.caps
        }
    }

    /// Loses the device on purpose, as a driver reset would (tests of the CPU fallback).
    pub fn lose(&self) {
        self.device.destroy();
    }

    /// The first failure since the device opened, if any: loss first, then errors.
    pub fn failure(&self) -> Option<GpuError> {
        let h = self.failures.lock().ok()?;
        if let Some(m) = &h.lost {
            return Some(GpuError::DeviceLost(m.clone()));
        }
        h.error.clone()
    }

    pub fn check(&self) -> Result<(), GpuError> {
        self.failure().map_or(Ok(()), Err)
    }

    /// Reads `bytes` from the start of `staging` (a MAP_READ buffer the last submission filled).
    pub async fn read(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>, GpuError> {
        self.check()?;
        // The map callback may run on another thread natively, or later from the event loop.
        let (tx, rx) = crate::oneshot::channel();
        staging
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
            return Err(self
                .failure()
                .unwrap_or(GpuError::DeviceLost(e.to_string())));
        }
        let mapped = rx.await;
        self.check()?;
        mapped.map_err(|e| {
            self.failure()
                .unwrap_or(GpuError::DeviceLost(e.to_string()))
        })?;
        let out = staging
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| GpuError::Validation(e.to_string()))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}
