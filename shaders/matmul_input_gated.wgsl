// The matmul's activations as silu(gate) × up, computed on load: the FFN's gating fused into
// the down projection where gate and up could not be one matrix.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> up: array<vec4<f32>>;

const NORM = false;

fn input_weight4(q: u32) -> vec4<f32> {
    return vec4<f32>(1.0);
}

fn activation4(at: u32, weight: vec4<f32>) -> vec4<f32> {
    let g = x[at];
    return g / (vec4<f32>(1.0) + exp(-g)) * up[at];
}

fn square4(at: u32) -> f32 {
    return 0.0;
}
