//! Every compute kernel behind one [`Kernel`] trait (its key, WGSL source, entry point and
//! bindings), with the pipelines and bind-group layouts they need built once and pooled.
//! Each op's Rust side sits in its own file next to its test against the CPU reference.

pub mod attention;
pub mod embed;
pub mod matmul;
pub mod sample;
#[cfg(test)]
mod testing;

use std::cell::RefCell;
use std::collections::HashMap;

use super::device::Caps;

/// How a kernel binds one buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Read,
    ReadWrite,
    Uniform,
}

use Binding::{Read, ReadWrite, Uniform};

/// One compute shader variant.
pub trait Kernel {
    /// Names the variant: two kernels with one key share a pipeline.
    fn key(&self) -> String;
    /// The WGSL module, assembled from `shaders/` for the device's features.
    fn source(&self) -> String;
    fn entry(&self) -> &'static str {
        "main"
    }
    /// Bindings 0.. of group 0, in order.
    fn bindings(&self) -> &'static [Binding];
    /// What the profile files its GPU time under (`matmul`, `attention`, ...).
    fn class(&self) -> &'static str;
}

/// The `Step` uniform every forward-step module declares.
const STEP: &str = include_str!("../../../../shaders/step.wgsl");
/// The weight-part uniform of the matmul and embedding modules.
pub const DIMS: &str = include_str!("../../../../shaders/dims.wgsl");

/// The lines a module over quantized weights starts with: the extensions, the arithmetic type of
/// dequantization, and the shared uniforms.
pub fn preamble(caps: Caps) -> String {
    let f = match caps.f16 {
        true => "enable f16;\nalias F = f16;\n",
        false => "alias F = f32;\n",
    };
    format!("{f}{STEP}\n{DIMS}\n")
}

/// A module that needs only the `Step` uniform.
pub fn with_step(body: &str) -> String {
    format!("{STEP}\n{body}")
}

/// Builds pipelines and layouts once per key.
pub struct Pool {
    device: wgpu::Device,
    layouts: RefCell<HashMap<&'static [Binding], wgpu::BindGroupLayout>>,
    pipelines: RefCell<HashMap<String, wgpu::ComputePipeline>>,
}

impl Pool {
    pub fn new(device: &wgpu::Device) -> Self {
        Self {
            device: device.clone(),
            layouts: Default::default(),
            pipelines: Default::default(),
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn layout(&self, bindings: &'static [Binding]) -> wgpu::BindGroupLayout {
        self.layouts
            .borrow_mut()
            .entry(bindings)
            .or_insert_with(|| {
                let entries: Vec<_> = bindings
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                        binding: i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: match b {
                                Read => wgpu::BufferBindingType::Storage { read_only: true },
                                ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                                Uniform => wgpu::BufferBindingType::Uniform,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                self.device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                        label: None,
                        entries: &entries,
                    })
            })
            .clone()
    }

    pub fn pipeline(&self, kernel: &dyn Kernel) -> wgpu::ComputePipeline {
        let key = kernel.key();
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&key),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
        let layout = self.layout(kernel.bindings());
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry()),
                compilation_options: Default::default(),
                cache: None,
            });
        self.pipelines.borrow_mut().insert(key, pipeline.clone());
        pipeline
    }

    /// A bind group for `kernel` over `buffers`, in binding order.
    pub fn bind(&self, kernel: &dyn Kernel, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let layout = self.layout(kernel.bindings());
        let entries: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        })
    }
}

/// How many workgroups a dispatch needs for a step of `seq` tokens.
#[derive(Debug, Clone, Copy)]
pub enum Groups {
    Fixed([u32; 3]),
    /// Matrix rows in blocks of `block`, activation rows in tiles of `tile` (or `fixed` rows).
    MatMul {
        rows: u32,
        block: u32,
        tile: u32,
        fixed: u32,
    },
    /// [x, tokens, 1].
    TokensInY(u32),
    /// Attention: [query heads, chunks the step spans, tokens].
    Chunks {
        heads: u32,
    },
    /// Attention's combining: [query heads, tokens, 1] where the step spans several chunks,
    /// else nothing.
    Combine {
        heads: u32,
    },
}

/// The most workgroups along one dimension (WebGPU's default limit).
const MAX_GROUPS: u32 = 65535;

impl Groups {
    pub fn size(self, step: Step) -> [u32; 3] {
        let seq = step.seq;
        match self {
            Groups::Fixed(g) => g,
            Groups::MatMul {
                rows,
                block,
                tile,
                fixed,
            } => {
                let blocks = rows.div_ceil(block);
                let m = if fixed != 0 { fixed } else { seq };
                [
                    blocks.min(MAX_GROUPS),
                    m.div_ceil(tile),
                    blocks.div_ceil(MAX_GROUPS),
                ]
            }
            Groups::TokensInY(x) => [x, seq, 1],
            Groups::Chunks { heads } => [heads, attention::splits(step.start, seq), seq],
            Groups::Combine { heads } => match attention::splits(step.start, seq) {
                1 => [0, 0, 0],
                _ => [heads, seq, 1],
            },
        }
    }
}

/// One dispatch of a forward step, built once: a pipeline and size for single-token steps and
/// one for prompt slices (they differ for the tiled matmul), and the bind group they share.
pub struct Op {
    decode: (wgpu::ComputePipeline, Groups),
    prefill: (wgpu::ComputePipeline, Groups),
    bind: wgpu::BindGroup,
    /// The kernel's [`Kernel::class`].
    pub class: &'static str,
}

impl Op {
    pub fn new(
        pool: &Pool,
        kernel: &dyn Kernel,
        buffers: &[&wgpu::Buffer],
        groups: Groups,
    ) -> Self {
        let p = pool.pipeline(kernel);
        Self {
            decode: (p.clone(), groups),
            prefill: (p, groups),
            bind: pool.bind(kernel, buffers),
            class: kernel.class(),
        }
    }

    /// `decode` serves single-token steps and `prefill` longer ones; they share a layout.
    pub fn pair(
        pool: &Pool,
        decode: (&dyn Kernel, Groups),
        prefill: (&dyn Kernel, Groups),
        buffers: &[&wgpu::Buffer],
    ) -> Self {
        Self {
            decode: (pool.pipeline(decode.0), decode.1),
            prefill: (pool.pipeline(prefill.0), prefill.1),
            bind: pool.bind(decode.0, buffers),
            class: decode.0.class(),
        }
    }

    /// Records the dispatch for `step`; false when it has no work (nothing recorded).
    pub fn record(&self, pass: &mut wgpu::ComputePass, step: Step) -> bool {
        let (pipeline, groups) = if step.seq == 1 {
            &self.decode
        } else {
            &self.prefill
        };
        let [x, y, z] = groups.size(step);
        if x == 0 || y == 0 || z == 0 {
            return false;
        }
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(x, y, z);
        true
    }
}

/// The `Step` uniform (`shaders/step.wgsl`): the one the host writes before each step.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Step {
    /// Tokens in this step.
    pub seq: u32,
    /// Position of the first of them (what the KV cache already holds).
    pub start: u32,
}

/// A uniform buffer holding `value`, one of the `#[repr(C)]` mirrors of a WGSL struct.
pub fn uniform<T: bytemuck::Pod>(device: &wgpu::Device, value: &T) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    let mut padded = bytemuck::bytes_of(value).to_vec();
    // Uniform bindings are read in 16-byte rows.
    padded.resize(padded.len().next_multiple_of(16).max(16), 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: &padded,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
    })
}

/// A storage buffer of `bytes` (rounded up to a word), zeroed.
pub fn storage(device: &wgpu::Device, bytes: u64, label: &str) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// A storage buffer holding `values`.
pub fn storage_init(device: &wgpu::Device, bytes: &[u8], label: &str) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().max(4).next_multiple_of(4), 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &padded,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    })
}

pub fn words_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn bytes_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
