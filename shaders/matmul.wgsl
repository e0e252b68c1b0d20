// y = x · Wᵀ (or y += x · Wᵀ) for a tile of R weight rows × TM activation rows; `weight4` comes
// from the format's file, `activation4` from the input's (plain, or SiLU-gated), F and TM from
// the preamble. The sum over k is split across the workgroup's WG threads and reduced by the
// entry point (shared memory, or subgroups where they exist).

@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<uniform> step: Step;

const WG: u32 = 64u;
const R: u32 = 4u;

fn activation_rows() -> u32 {
    return select(step.seq, dims.m, dims.m != 0u);
}

// This thread's share of the R × TM dot products: acc[i][r] for activation row m0+i, weight row r0+r.
fn partial_sums(r0: u32, m0: u32, t: u32) -> array<vec4<f32>, TM> {
    var acc: array<vec4<f32>, TM>;
    let kq = dims.k / 4u;
    let m = activation_rows();
    let last = dims.rows - 1u;
    for (var q = t; q < kq; q += WG) {
        let w0 = vec4<f32>(weight4(min(r0, last), q, dims.k));
        let w1 = vec4<f32>(weight4(min(r0 + 1u, last), q, dims.k));
        let w2 = vec4<f32>(weight4(min(r0 + 2u, last), q, dims.k));
        let w3 = vec4<f32>(weight4(min(r0 + 3u, last), q, dims.k));
        for (var i = 0u; i < TM; i++) {
            if (m0 + i < m) {
                let a = activation4((m0 + i) * kq + q);
                acc[i] += vec4<f32>(dot(w0, a), dot(w1, a), dot(w2, a), dot(w3, a));
            }
        }
    }
    return acc;
}

fn store(r0: u32, m0: u32, i: u32, r: u32, v: f32) {
    if (m0 + i < activation_rows() && r0 + r < dims.rows) {
        let at = (m0 + i) * dims.n + dims.row0 + r0 + r;
        y[at] = select(v, y[at] + v, dims.accumulate != 0u);
    }
}

// Row blocks beyond 65535 workgroups spill into z.
fn row_block(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.x + wid.z * nwg.x) * R;
}
