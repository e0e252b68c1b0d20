//! Quantized matrix × activations: y = x · Wᵀ, or y += x · Wᵀ for a residual. One kernel serves
//! decode (a tile of one activation row: matrix × vector) and prefill (tiles of 8 rows, each
//! weight dequantized once per tile), for every block format through the format's `weight4`,
//! and for fused matrices (Q, K and V; gate and up) whose slots may differ in format. Its
//! prologue may RMS-normalize the input (the layer norm) or gate it (silu(gate) × up); its
//! epilogue adds a bias or a residual, or combines gate and up rows into silu(gate) × up.

use super::{preamble, uniform, Binding, Groups, Kernel, Op, Pool};
use crate::engine::gpu::device::Caps;
use crate::engine::gpu::weights::{Format, GpuMatrix, Slot};

/// Activation rows per workgroup in prompt steps.
pub const PREFILL_TILE: u32 = 8;
/// Threads per workgroup.
const WORKGROUP: u32 = 64;

/// How the kernel reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prologue {
    Plain,
    /// RMS-normalized, times the norm's weight (binding 6).
    Norm,
    /// silu(x) × up (binding 6).
    Gated,
}

/// What the kernel does with the finished sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    Rows,
    /// Plus a bias indexed by output column (the last binding).
    Bias,
    /// Gate's rows then up's, combined as silu(gate) × up.
    Pairs,
}

pub struct MatMul {
    pub slots: Vec<Slot>,
    /// Activation rows per workgroup.
    pub tile: u32,
    pub caps: Caps,
    pub prologue: Prologue,
    pub epilogue: Epilogue,
    /// Decode's matrix × vector (`matvec.wgsl`) where the format has one, else the tiles.
    pub lanes: Option<Lanes>,
}

/// How decode's matrix × vector spreads a workgroup: `rows` weight rows, `lanes` threads each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lanes {
    pub rows: u32,
    pub lanes: u32,
}

impl Lanes {
    /// For rows of `k` values on this device: about four 32-value blocks a lane (4 to 32
    /// lanes), at least 4 and at most 16 rows, a workgroup no smaller than 64 threads or the
    /// device's subgroup, and no larger than the device allows.
    pub fn choose(caps: Caps, k: usize) -> Self {
        let lanes = ((k / 32).div_ceil(4) as u32)
            .next_power_of_two()
            .clamp(4, 32);
        let threads = 64u32.max(caps.subgroup_size.next_power_of_two());
        let most = caps.max_invocations.max(64);
        let rows = (threads / lanes).clamp(4, 16).min(most / lanes).max(4);
        Self { rows, lanes }
    }
}

/// The matrix × vector file of a format read 16 bytes at a time (after `matvec_prelude.wgsl`).
fn matvec_shader(format: Format) -> Option<&'static str> {
    Some(match format {
        Format::Q4_0 => include_str!("../../../../shaders/matvec_q4_0.wgsl"),
        Format::Q4_1 => include_str!("../../../../shaders/matvec_q4_1.wgsl"),
        Format::Q8_0 => include_str!("../../../../shaders/matvec_q8_0.wgsl"),
        Format::Iq4Nl => include_str!("../../../../shaders/matvec_iq4_nl.wgsl"),
        _ => return None,
    })
}

/// How a product reads its input, with the buffers that takes.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Plain,
    /// RMS-normalized with this weight: the norm before the product.
    Norm {
        weight: &'a wgpu::Buffer,
        eps: f32,
    },
    /// silu(x) × up.
    Gated {
        up: &'a wgpu::Buffer,
    },
}

/// Where a product's rows go.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    /// Into columns `col0..` of output rows `stride` wide (0: the matrix's row count), added
    /// to what they hold with `accumulate`, plus `bias[column]` with a bias.
    Rows {
        col0: usize,
        stride: usize,
        accumulate: bool,
        bias: Option<&'a wgpu::Buffer>,
    },
    /// A fused gate-and-up matrix's silu(gate) × up, rows as wide as gate.
    Pairs,
}

impl Output<'_> {
    /// The whole of each output row, written.
    pub const STORE: Output<'static> = Output::Rows {
        col0: 0,
        stride: 0,
        accumulate: false,
        bias: None,
    };
    /// Added to what each output row holds: a residual.
    pub const ADD: Output<'static> = Output::Rows {
        col0: 0,
        stride: 0,
        accumulate: true,
        bias: None,
    };
}

/// One matrix product as the forward pass asks for it.
pub struct Product<'a> {
    pub w: &'a GpuMatrix,
    /// Activation rows.
    pub x: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    /// The `Step` uniform.
    pub step: &'a wgpu::Buffer,
    pub input: Input<'a>,
    pub output: Output<'a>,
    /// Activation rows when non-zero, instead of the step's.
    pub fixed: u32,
    /// The input is the step's last row (the output head).
    pub last: bool,
}

impl<'a> Product<'a> {
    /// Over every activation row of the step.
    pub fn new(
        w: &'a GpuMatrix,
        [x, y, step]: [&'a wgpu::Buffer; 3],
        input: Input<'a>,
        output: Output<'a>,
    ) -> Self {
        Self {
            w,
            x,
            y,
            step,
            input,
            output,
            fixed: 0,
            last: false,
        }
    }
}

impl MatMul {
    /// The variant for steps of `seq` activation rows: one row per workgroup for decode, tiles
    /// of [`PREFILL_TILE`] rows for prompts.
    pub fn for_rows(p: &Product, seq: u32, caps: Caps) -> Self {
        let slots = &p.w.slots;
        let one_format = slots.iter().all(|s| s.format == slots[0].format);
        let lanes = (seq == 1 && one_format && matvec_shader(slots[0].format).is_some())
            .then(|| Lanes::choose(caps, p.w.n_in));
        Self {
            slots: slots.clone(),
            lanes,
            tile: if seq == 1 { 1 } else { PREFILL_TILE },
            caps,
            prologue: match p.input {
                Input::Plain => Prologue::Plain,
                Input::Norm { .. } => Prologue::Norm,
                Input::Gated { .. } => Prologue::Gated,
            },
            epilogue: match p.output {
                Output::Rows { bias: Some(_), .. } => Epilogue::Bias,
                Output::Rows { .. } => Epilogue::Rows,
                Output::Pairs => Epilogue::Pairs,
            },
        }
    }

    /// Weight rows one workgroup takes.
    pub fn rows(&self) -> u32 {
        self.lanes.map_or(4, |l| l.rows)
    }

    /// Matrix × vector's block reader, and where each fused row's blocks start: its row among
    /// its own slot's, past the slot's base.
    fn matvec_decoder(&self, lanes: Lanes) -> String {
        format!(
            "const RD: u32 = {}u;\nconst LANES: u32 = {}u;\n{}{}\n{}",
            lanes.rows,
            lanes.lanes,
            include_str!("../../../../shaders/matvec_prelude.wgsl"),
            matvec_shader(self.slots[0].format).unwrap_or_default(),
            self.by_slot("slot_row(row: u32) -> u32", |s| {
                format!("row - {}u + {}u", s.start, s.base)
            })
        )
    }

    /// `weight4` over the slots: the format's own for one slot from row 0, else a dispatch to
    /// each slot's renamed decoder.
    fn decoders(&self) -> String {
        let first = self.slots[0];
        if self.slots.len() == 1 && first.base == 0 {
            return first.format.shader().into();
        }
        let mut out = String::from(include_str!("../../../../shaders/quant_prelude.wgsl"));
        let mut seen = Vec::new();
        for s in &self.slots {
            if !seen.contains(&s.format) {
                seen.push(s.format);
                out.push_str(&s.format.renamed_decoder());
            }
        }
        out.push_str(
            &self.by_slot("weight4(row: u32, quad: u32, k: u32) -> vec4<F>", |s| {
                format!(
                    "weight4_{}(row - {}u + {}u, quad, k)",
                    s.format.name(),
                    s.start,
                    s.base
                )
            }),
        );
        out
    }

    /// A WGSL function `signature` of a fused matrix's `row` returning `value(slot)` for the slot
    /// the row is in.
    fn by_slot(&self, signature: &str, value: impl Fn(&Slot) -> String) -> String {
        let mut out = format!("\nfn {signature} {{\n");
        for (i, s) in self.slots.iter().enumerate() {
            let v = value(s);
            match self.slots.get(i + 1) {
                Some(next) => out.push_str(&format!(
                    "    if (row < {}u) {{\n        return {v};\n    }}\n",
                    next.start
                )),
                None => out.push_str(&format!("    return {v};\n")),
            }
        }
        out.push_str("}\n");
        out
    }
}

/// The dispatches of one product over every part of its matrix, for steps of one token and of
/// many (one only with `fixed` 1). The one place a split matrix's dispatch list is built: the
/// forward pass, the bandwidth probe and the kernel tests all take it from here.
pub fn dispatches(pool: &Pool, caps: Caps, p: &Product) -> Vec<Op> {
    let one = MatMul::for_rows(p, 1, caps);
    let tiled = MatMul::for_rows(p, 2, caps);
    let w = p.w;
    let (eps, extra) = match p.input {
        Input::Plain => (0.0, None),
        Input::Norm { weight, eps } => (eps, Some(weight)),
        Input::Gated { up } => (0.0, Some(up)),
    };
    w.parts
        .iter()
        .map(|part| {
            let (row0, n, accumulate, bias) = match p.output {
                Output::Rows {
                    col0,
                    stride,
                    accumulate,
                    bias,
                } => (
                    col0 + part.row0,
                    if stride == 0 { w.n_out } else { stride },
                    accumulate,
                    bias,
                ),
                Output::Pairs => (0, w.n_out / 2, false, None),
            };
            let d = uniform(
                pool.device(),
                &Dims {
                    k: w.n_in as u32,
                    rows: part.rows as u32,
                    row0: row0 as u32,
                    n: n as u32,
                    m: p.fixed,
                    accumulate: accumulate as u32,
                    eps,
                    last: p.last as u32,
                },
            );
            let mut buffers = vec![&part.quants, &part.scales, p.x, p.y, &d, p.step];
            buffers.extend(extra);
            buffers.extend(bias);
            let groups = |k: &MatMul| Groups::MatMul {
                rows: part.rows as u32,
                block: k.rows(),
                tile: k.tile,
                fixed: p.fixed,
            };
            match p.fixed {
                1 => Op::new(pool, &one, &buffers, groups(&one)),
                _ => Op::pair(
                    pool,
                    (&one, groups(&one)),
                    (&tiled, groups(&tiled)),
                    &buffers,
                ),
            }
        })
        .collect()
}

impl Kernel for MatMul {
    fn key(&self) -> String {
        let slots: Vec<String> = self
            .slots
            .iter()
            .map(|s| format!("{}@{}+{}", s.format.name(), s.start, s.base))
            .collect();
        let kernel = match self.lanes {
            Some(l) => format!("matvec_r{}_l{}", l.rows, l.lanes),
            None => format!(
                "matmul_t{}_h{}_s{}",
                self.tile, self.caps.f16 as u8, self.caps.subgroups as u8
            ),
        };
        format!(
            "{kernel}_{}_{:?}_{:?}",
            slots.join("."),
            self.prologue,
            self.epilogue
        )
    }

    fn source(&self) -> String {
        let tiles = include_str!("../../../../shaders/matmul_tiles.wgsl");
        let (decoders, main, threads) = match self.lanes {
            Some(l) => (
                self.matvec_decoder(l),
                include_str!("../../../../shaders/matvec.wgsl").to_string(),
                l.rows * l.lanes,
            ),
            None => (
                self.decoders(),
                format!(
                    "{tiles}\n{}",
                    match self.caps.subgroups {
                        true => include_str!("../../../../shaders/subgroup/matmul_main.wgsl"),
                        false => include_str!("../../../../shaders/matmul_main.wgsl"),
                    }
                ),
                WORKGROUP,
            ),
        };
        let input = match self.prologue {
            Prologue::Plain => include_str!("../../../../shaders/matmul_input.wgsl"),
            Prologue::Norm => include_str!("../../../../shaders/matmul_input_norm.wgsl"),
            Prologue::Gated => include_str!("../../../../shaders/matmul_input_gated.wgsl"),
        };
        let output = match self.epilogue {
            Epilogue::Pairs => include_str!("../../../../shaders/matmul_output_pairs.wgsl"),
            _ => include_str!("../../../../shaders/matmul_output.wgsl"),
        };
        let bias = match self.epilogue {
            Epilogue::Bias => format!(
                "@group(0) @binding({}) var<storage, read> bias_by_column: array<f32>;\n\
                 fn bias(col: u32) -> f32 {{\n    return bias_by_column[col];\n}}\n",
                self.bindings().len() - 1
            ),
            _ => "fn bias(col: u32) -> f32 {\n    return 0.0;\n}\n".into(),
        };
        format!(
            "{}const TM: u32 = {}u;\nconst WG: u32 = {threads}u;\n{decoders}\n{input}\n{bias}\n{}\n{output}\n{main}",
            preamble(self.caps),
            self.tile,
            include_str!("../../../../shaders/matmul.wgsl"),
        )
    }

    fn bindings(&self) -> &'static [Binding] {
        use Binding::*;
        match (self.prologue, self.epilogue) {
            (Prologue::Plain, Epilogue::Bias) => {
                &[Read, Read, Read, ReadWrite, Uniform, Uniform, Read]
            }
            (Prologue::Plain, _) => &[Read, Read, Read, ReadWrite, Uniform, Uniform],
            (_, Epilogue::Bias) => &[Read, Read, Read, ReadWrite, Uniform, Uniform, Read, Read],
            _ => &[Read, Read, Read, ReadWrite, Uniform, Uniform, Read],
        }
    }

    fn class(&self) -> &'static str {
        "matmul"
    }
}

/// The `Dims` uniform (`shaders/dims.wgsl`): one part of a weight matrix as the matmul and
/// embedding kernels see it.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Dims {
    /// Values per row (n_in).
    pub k: u32,
    /// Rows in this part.
    pub rows: u32,
    /// The output column of the part's first row.
    pub row0: u32,
    /// Output row stride.
    pub n: u32,
    /// Activation rows when fixed; 0: the step's token count.
    pub m: u32,
    /// 1: the product is added to the output (a residual) rather than written.
    pub accumulate: u32,
    /// The RMSNorm epsilon of a normalized input.
    pub eps: f32,
    /// 1: the input is the step's last row.
    pub last: u32,
}

impl Dims {
    /// A table's part for the embedding lookup.
    pub fn rows_of(k: usize, part: &crate::engine::gpu::weights::Part) -> Self {
        Self {
            k: k as u32,
            rows: part.rows as u32,
            row0: part.row0 as u32,
            n: k as u32,
            m: 0,
            accumulate: 0,
            eps: 0.0,
            last: 0,
        }
    }
}

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
