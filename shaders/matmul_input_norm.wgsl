// The matmul's activations RMS-normalized on load: x × the norm's weight here, and 1/rms(x)
// applied to the finished sums (`row_scale`), so the layer's RMSNorm costs no dispatch and no
// buffer of its own.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> norm_weight: array<vec4<f32>>;

const NORM = true;

fn input_weight4(q: u32) -> vec4<f32> {
    return norm_weight[q];
}

fn activation4(at: u32, weight: vec4<f32>) -> vec4<f32> {
    return x[at] * weight;
}

fn square4(at: u32) -> f32 {
    let v = x[at];
    return dot(v, v);
}
