// Rotary position embedding from a precomputed cos/sin table (one row of head_dim/2 pairs per
// position). Normal RoPE rotates pairs (2j, 2j+1); NeoX rotates (j, j + head_dim/2).
// `rope_q` writes rotated queries; `store_kv` writes rotated keys and the values into the cache.

struct RopeParams {
    heads: u32,
    head_dim: u32,
    neox: u32,
    // Positions the cache holds room for.
    capacity: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> rope: RopeParams;
@group(0) @binding(4) var<uniform> step: Step;

fn pair(j: u32) -> vec2<u32> {
    if (rope.neox != 0u) {
        return vec2<u32>(j, j + rope.head_dim / 2u);
    }
    return vec2<u32>(2u * j, 2u * j + 1u);
}

fn rotate(i: u32, h: u32, j: u32) -> vec2<f32> {
    let p = pair(j) + row(i, h);
    let a = src[p.x];
    let b = src[p.y];
    let cs = table[(step.start + i) * (rope.head_dim / 2u) + j];
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@group(0) @binding(5) var<storage, read> v_src: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

// Invocations: gid.x a pair, gid.y a head, gid.z a token; those past the work do nothing.
fn in_range(gid: vec3<u32>) -> bool {
    return gid.x < rope.head_dim / 2u && gid.z < step.seq;
}

// Where head h of token i starts in a [token][head][head_dim] buffer.
fn row(i: u32, h: u32) -> u32 {
    return (i * rope.heads + h) * rope.head_dim;
}

@compute @workgroup_size(32)
fn rope_q(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (!in_range(gid)) {
        return;
    }
    let r = rotate(gid.z, gid.y, gid.x);
    let p = pair(gid.x) + row(gid.z, gid.y);
    dst[p.x] = r.x;
    dst[p.y] = r.y;
}

// The cache is laid out [kv head][position][head_dim].
@compute @workgroup_size(32)
fn store_kv(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (!in_range(gid)) {
        return;
    }
    let r = rotate(gid.z, gid.y, gid.x);
    let p = pair(gid.x);
    let from_row = p + row(gid.z, gid.y);
    let to = p + (gid.y * rope.capacity + step.start + gid.z) * rope.head_dim;
    dst[to.x] = r.x;
    dst[to.y] = r.y;
    v_cache[to.x] = v_src[from_row.x];
    v_cache[to.y] = v_src[from_row.y];
}
