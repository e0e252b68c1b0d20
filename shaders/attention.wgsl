// Causal attention over the KV cache with grouped-query heads, split over the sequence
// (flash-decoding): one workgroup per (query head, chunk of CHUNK positions, token of the
// step). Its prologue does what the projection's epilogue could not, needing a whole head:
// the per-head q/k RMSNorm (Qwen3) and RoPE. The step's own keys and values come straight from
// the fused Q·K·V output; the first query head of each KV group writes its token's rotated key
// and value into the cache, where no workgroup of this dispatch reads them. With one chunk the
// result is written as it is; with more, each chunk leaves (max, sum, weighted values) for
// `combine`.

struct AttentionParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    // 1/√head_dim.
    scale: f32,
    // 1: NeoX pairs (j, j + head_dim/2); 0: pairs (2j, 2j+1).
    neox: u32,
    // 1: per-head RMSNorm of queries and keys before RoPE, weights in `norms`.
    qk_norm: u32,
    eps: f32,
    // Chunks a token's row of `parts` has room for.
    max_splits: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read> norms: array<f32>;
@group(0) @binding(5) var<storage, read_write> parts: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<uniform> att: AttentionParams;
@group(0) @binding(8) var<uniform> step: Step;

const WG: u32 = 64u;
const LOWEST: f32 = -3.4e38;
var<workgroup> query: array<f32, 256>;
var<workgroup> weights: array<f32, CHUNK>;
var<workgroup> red: array<f32, WG>;

fn reduce_max(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (t < s) {
            red[t] = max(red[t], red[t + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(t: u32, v: f32) -> f32 {
    red[t] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (t < s) {
            red[t] += red[t + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Values per token in `qkv`: queries, keys, values.
fn width() -> u32 {
    return (att.heads + 2u * att.kv_heads) * att.head_dim;
}

fn splits() -> u32 {
    return (step.start + step.seq + CHUNK - 1u) / CHUNK;
}

fn pair(j: u32) -> vec2<u32> {
    if (att.neox != 0u) {
        return vec2<u32>(j, j + att.head_dim / 2u);
    }
    return vec2<u32>(2u * j, 2u * j + 1u);
}

// (cos, sin) of pair j at position `pos`.
fn angle(pos: u32, j: u32) -> vec2<f32> {
    return table[pos * (att.head_dim / 2u) + j];
}

fn rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

// The q/k norm's weight of value d (keys: `key` 1).
fn norm_weight(key: u32, d: u32) -> f32 {
    return select(1.0, norms[key * att.head_dim + d], att.qk_norm != 0u);
}

// q · (token r's key of KV head g, normalized and rotated); `write` also stores that key and
// the value beside it into the cache.
fn new_key_score(r: u32, g: u32, write: bool) -> f32 {
    let hd = att.head_dim;
    let kb = r * width() + (att.heads + g) * hd;
    var ks = 1.0;
    if (att.qk_norm != 0u) {
        var ss = 0.0;
        for (var d = 0u; d < hd; d++) {
            let v = qkv[kb + d];
            ss += v * v;
        }
        ks = inverseSqrt(ss / f32(hd) + att.eps);
    }
    let pos = step.start + r;
    let cb = (g * att.capacity + pos) * hd;
    var s = 0.0;
    for (var j = 0u; j < hd / 2u; j++) {
        let p = pair(j);
        let k = rotate(qkv[kb + p.x] * ks * norm_weight(1u, p.x), qkv[kb + p.y] * ks * norm_weight(1u, p.y), angle(pos, j));
        s += query[p.x] * k.x + query[p.y] * k.y;
        if (write) {
            k_cache[cb + p.x] = k.x;
            k_cache[cb + p.y] = k.y;
        }
    }
    if (write) {
        let vb = r * width() + (att.heads + att.kv_heads + g) * hd;
        for (var d = 0u; d < hd; d++) {
            v_cache[cb + d] = qkv[vb + d];
        }
    }
    return s;
}

fn value(j: u32, g: u32, d: u32) -> f32 {
    if (j < step.start) {
        return v_cache[(g * att.capacity + j) * att.head_dim + d];
    }
    return qkv[(j - step.start) * width() + (att.heads + att.kv_heads + g) * att.head_dim + d];
}

// wid.x: query head, wid.y: chunk, wid.z: token of this step.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.x;
    let s = wid.y;
    let i = wid.z;
    let hd = att.head_dim;
    let g = h / (att.heads / att.kv_heads);
    let pos = step.start + i;
    // The query: normalized, rotated to its position, scaled.
    let qrow = i * width() + h * hd;
    var ss = 0.0;
    for (var d = t; d < hd; d += WG) {
        let v = qkv[qrow + d];
        query[d] = v;
        ss += v * v;
    }
    ss = reduce_sum(t, ss);
    let qs = select(1.0, inverseSqrt(ss / f32(hd) + att.eps), att.qk_norm != 0u) * att.scale;
    var rotated: array<vec2<f32>, 2>;
    for (var c = 0u; c < 2u; c++) {
        let j = t + c * WG;
        if (j < hd / 2u) {
            let p = pair(j);
            rotated[c] = rotate(query[p.x] * norm_weight(0u, p.x), query[p.y] * norm_weight(0u, p.y), angle(pos, j)) * qs;
        }
    }
    workgroupBarrier();
    for (var c = 0u; c < 2u; c++) {
        let j = t + c * WG;
        if (j < hd / 2u) {
            let p = pair(j);
            query[p.x] = rotated[c].x;
            query[p.y] = rotated[c].y;
        }
    }
    workgroupBarrier();

    let first = s * CHUNK;
    let end = min(first + CHUNK, pos + 1u);
    var m = LOWEST;
    for (var j = first + t; j < end; j += WG) {
        var sc = 0.0;
        if (j < step.start) {
            let kb = (g * att.capacity + j) * hd;
            for (var d = 0u; d < hd; d++) {
                sc += query[d] * k_cache[kb + d];
            }
        } else {
            let writer = h % (att.heads / att.kv_heads) == 0u && j == pos;
            sc = new_key_score(j - step.start, g, writer);
        }
        weights[j - first] = sc;
        m = max(m, sc);
    }
    m = reduce_max(t, m);
    var l = 0.0;
    for (var j = first + t; j < end; j += WG) {
        let e = exp(weights[j - first] - m);
        weights[j - first] = e;
        l += e;
    }
    l = reduce_sum(t, l);
    let single = splits() == 1u;
    let base = ((i * att.heads + h) * att.max_splits + s) * (hd + 2u);
    for (var d = t; d < hd; d += WG) {
        var o = 0.0;
        for (var j = first; j < end; j++) {
            o += weights[j - first] * value(j, g, d);
        }
        if (single) {
            out[(i * att.heads + h) * hd + d] = o / l;
        } else {
            parts[base + 2u + d] = o;
        }
    }
    if (!single && t == 0u) {
        parts[base] = m;
        parts[base + 1u] = l;
    }
}

// One workgroup per (query head, token): the chunks' results weighted by exp(max - overall max).
@compute @workgroup_size(WG)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.x;
    let i = wid.y;
    let hd = att.head_dim;
    let n = splits();
    let row = (i * att.heads + h) * att.max_splits;
    var top = LOWEST;
    for (var s = 0u; s < n; s++) {
        top = max(top, parts[(row + s) * (hd + 2u)]);
    }
    var l = 0.0;
    for (var s = 0u; s < n; s++) {
        let b = (row + s) * (hd + 2u);
        l += exp(parts[b] - top) * parts[b + 1u];
    }
    for (var d = t; d < hd; d += WG) {
        var o = 0.0;
        for (var s = 0u; s < n; s++) {
            let b = (row + s) * (hd + 2u);
            o += exp(parts[b] - top) * parts[b + 2u + d];
        }
        out[(i * att.heads + h) * hd + d] = o / l;
    }
}
