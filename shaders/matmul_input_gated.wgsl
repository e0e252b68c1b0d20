// The matmul's activations as silu(gate) × up, computed on load: the FFN's gating fused into
// the down projection, so it costs no dispatch and no buffer of its own.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> up: array<vec4<f32>>;

fn activation4(i: u32) -> vec4<f32> {
    let g = x[i];
    return g / (vec4<f32>(1.0) + exp(-g)) * up[i];
}
