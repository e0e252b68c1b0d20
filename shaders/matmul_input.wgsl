// The matmul's activations as stored.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;

fn activation4(i: u32) -> vec4<f32> {
    return x[i];
}
