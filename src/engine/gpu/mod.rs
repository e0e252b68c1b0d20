//! The GPU backend: our WGSL kernels (`shaders/`) on wgpu, WebGPU in the browser and Vulkan
//! natively. Weights stream from the chunk store into GPU buffers; a forward step is one
//! command buffer of cached pipelines and bind groups; decode reads back one token id.

pub mod device;
pub mod kernels;
pub mod weights;

pub use device::{Caps, Gpu, Wanted};

/// Failures of the GPU path; `DeviceLost` and `OutOfMemory` let `auto` carry on on the CPU.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    #[error("no usable GPU: {0}")]
    Unavailable(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("the GPU ran out of memory: {0}")]
    OutOfMemory(String),
    #[error("the model does not fit the GPU's limits: {0}")]
    Limits(String),
    #[error("GPU validation error: {0}")]
    Validation(String),
}

impl GpuError {
    /// The device failed (as opposed to being absent or refusing the model).
    pub fn is_device_failure(&self) -> bool {
        matches!(self, GpuError::DeviceLost(_) | GpuError::OutOfMemory(_) | GpuError::Validation(_))
    }
}
