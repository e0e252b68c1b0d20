// y = x · Wᵀ (or y += x · Wᵀ) for a tile of R weight rows × TM activation rows. `weight4` comes
// from the format's file (or the slots of a fused matrix), `activation4` and `square4` from
// the input's (plain, RMS-normalized, or SiLU-gated), `weight_row` and `finish` from the
// output's (rows stored, or gate/up pairs combined); F, TM and WG from the preamble. The sum
// over k is split across the workgroup's WG threads and reduced by the entry point (shared
// memory, or subgroups where they exist).

@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<uniform> step: Step;

const R: u32 = 4u;

// This thread's share of the R × TM dot products (acc[i][r]: activation row m0+i, weight row
// weight_row(r0, r)) and of each activation row's sum of squares.
var<private> acc: array<vec4<f32>, TM>;
var<private> squares: array<f32, TM>;

fn activation_rows() -> u32 {
    return select(step.seq, dims.m, dims.m != 0u);
}

// The activation row tile row 0 reads: the step's last for the output head.
fn first_row() -> u32 {
    return select(0u, step.seq - 1u, dims.last != 0u);
}

fn partial_sums(r0: u32, m0: u32, t: u32) {
    let kq = dims.k / 4u;
    let m = activation_rows();
    let x0 = first_row();
    let rows = vec4<u32>(weight_row(r0, 0u), weight_row(r0, 1u), weight_row(r0, 2u), weight_row(r0, 3u));
    for (var q = t; q < kq; q += WG) {
        let w0 = vec4<f32>(weight4(rows.x, q, dims.k));
        let w1 = vec4<f32>(weight4(rows.y, q, dims.k));
        let w2 = vec4<f32>(weight4(rows.z, q, dims.k));
        let w3 = vec4<f32>(weight4(rows.w, q, dims.k));
        for (var i = 0u; i < TM; i++) {
            if (m0 + i < m) {
                let at = (x0 + m0 + i) * kq + q;
                let a = activation4(at, q);
                squares[i] += square4(at);
                acc[i] += vec4<f32>(dot(w0, a), dot(w1, a), dot(w2, a), dot(w3, a));
            }
        }
    }
}

// What the reduced sums of activation row m0+i are multiplied by: 1/rms(x) for a normalized
// input, else 1.
fn row_scale(sum_squares: f32) -> f32 {
    return select(1.0, inverseSqrt(sum_squares / f32(dims.k) + dims.eps), NORM);
}

// Row blocks beyond 65535 workgroups spill into z.
fn row_block(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.z * nwg.x) * R;
}
