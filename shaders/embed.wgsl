// Embedding lookup: x[i] = row ids[i] of the quantized table, for the ids this part holds.
// `weight4` comes from the format's file.

@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<uniform> step: Step;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let kq = dims.k / 4u;
    let i = gid.y;
    let q = gid.x;
    if (i >= step.seq || q >= kq) {
        return;
    }
    let id = ids[i];
    if (id >= dims.row0 && id < dims.row0 + dims.rows) {
        x[i * kq + q] = vec4<f32>(weight4(id - dims.row0, q, dims.k));
    }
}
