// What both matrix-product kernels share: the tiles (`matmul_tiles.wgsl`) and decode's
// matrix × vector (`matvec.wgsl`). `activation4` and `square4` come from the input's file
// (plain, RMS-normalized, or SiLU-gated), `weight_row` and `finish` from the output's (rows
// stored, or gate/up pairs combined), which take R weight rows at a time; F, TM and WG from
// the preamble.

@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<uniform> step: Step;

const R: u32 = 4u;

fn activation_rows() -> u32 {
    return select(step.seq, dims.m, dims.m != 0u);
}

// The activation row tile row 0 reads: the step's last for the output head.
fn first_row() -> u32 {
    return select(0u, step.seq - 1u, dims.last != 0u);
}

// What the reduced sums of activation row m0+i are multiplied by: 1/rms(x) for a normalized
// input, else 1.
fn row_scale(sum_squares: f32) -> f32 {
    return select(1.0, inverseSqrt(sum_squares / f32(dims.k) + dims.eps), NORM);
}

// The first of the workgroup's `rows` weight rows; row blocks beyond 65535 workgroups spill
// into z.
fn row_block(wid: vec3<u32>, nwg: vec3<u32>, rows: u32) -> u32 {
    return (wid.x + wid.z * nwg.x) * rows;
}
