// In-place add over `rows × width` values (rows = the step's tokens, or `fixed`): y += b, with b
// repeating every `b_len` values (the Q, K and V biases).

struct Shape {
    width: u32,
    b_len: u32,
    fixed: u32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> shape: Shape;
@group(0) @binding(3) var<uniform> step: Step;

fn count() -> u32 {
    return select(step.seq, shape.fixed, shape.fixed != 0u) * shape.width;
}

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i < count()) {
        y[i] += b[i % shape.b_len];
    }
}
