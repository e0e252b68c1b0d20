// RMSNorm of each row: dst = src / sqrt(mean(src²) + eps) * weight. One workgroup per row.

struct NormParams {
    width: u32,
    // Rows per token (heads, for the per-head norm); rows = seq × this, or `fixed` when non-zero.
    per_token: u32,
    fixed: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<uniform> norm: NormParams;
@group(0) @binding(4) var<uniform> step: Step;

const WG: u32 = 64u;
var<workgroup> sums: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let rows = select(step.seq * norm.per_token, norm.fixed, norm.fixed != 0u);
    let row = wid.x;
    if (row >= rows) {
        return;
    }
    let base = row * norm.width;
    var s = 0.0;
    for (var j = t; j < norm.width; j += WG) {
        let v = src[base + j];
        s += v * v;
    }
    sums[t] = s;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h /= 2u) {
        if (t < h) {
            sums[t] += sums[t + h];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(sums[0] / f32(norm.width) + norm.eps);
    for (var j = t; j < norm.width; j += WG) {
        dst[base + j] = src[base + j] * scale * weight[j];
    }
}
