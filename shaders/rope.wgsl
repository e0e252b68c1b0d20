// Rotary position embedding from a precomputed cos/sin table (one row of head_dim/2 pairs per
// position). Normal RoPE rotates pairs (2j, 2j+1); NeoX rotates (j, j + head_dim/2).
// `rope_q` writes rotated queries; `store_kv` writes rotated keys and the values into the cache.

struct Rope {
    heads: u32,
    head_dim: u32,
    neox: u32,
    // Positions the cache holds room for.
    capacity: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> rope: Rope;
@group(0) @binding(4) var<uniform> step: Step;

fn pair(j: u32) -> vec2<u32> {
    if (rope.neox != 0u) {
        return vec2<u32>(j, j + rope.head_dim / 2u);
    }
    return vec2<u32>(2u * j, 2u * j + 1u);
}

fn rotate(i: u32, h: u32, j: u32) -> vec2<f32> {
    let p = pair(j);
    let base = (i * rope.heads + h) * rope.head_dim;
    let a = src[base + p.x];
    let b = src[base + p.y];
    let cs = table[(step.start + i) * (rope.head_dim / 2u) + j];
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

@group(0) @binding(5) var<storage, read> v_src: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

// gid.x: pair, gid.y: head, gid.z: token.
@compute @workgroup_size(32)
fn rope_q(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let h = gid.y;
    let i = gid.z;
    if (j >= rope.head_dim / 2u || i >= step.seq) {
        return;
    }
    let r = rotate(i, h, j);
    let p = pair(j);
    let base = (i * rope.heads + h) * rope.head_dim;
    dst[base + p.x] = r.x;
    dst[base + p.y] = r.y;
}

// The cache is laid out [kv head][position][head_dim].
@compute @workgroup_size(32)
fn store_kv(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let h = gid.y;
    let i = gid.z;
    if (j >= rope.head_dim / 2u || i >= step.seq) {
        return;
    }
    let r = rotate(i, h, j);
    let p = pair(j);
    let at = (i * rope.heads + h) * rope.head_dim;
    let to = (h * rope.capacity + step.start + i) * rope.head_dim;
    dst[to + p.x] = r.x;
    dst[to + p.y] = r.y;
    v_cache[to + p.x] = v_src[at + p.x];
    v_cache[to + p.y] = v_src[at + p.y];
}
