// Causal attention over the KV cache for one (query head, token) per workgroup, with grouped
// query heads sharing a KV head. Scores go through a scratch row of the context's length:
// pass 1 writes q·k and finds the max, pass 2 exponentiates and sums, pass 3 weights the values.

struct AttentionParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    capacity: u32,
    // Tokens per step the scratch has rows for.
    slice: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> att: AttentionParams;
@group(0) @binding(6) var<uniform> step: Step;

const WG: u32 = 64u;
var<workgroup> query: array<f32, 256>;
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

// wid.x: query head, wid.y: token of this step.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let h = wid.x;
    let i = wid.y;
    let hd = att.head_dim;
    let kvh = h / (att.heads / att.kv_heads);
    let n = step.start + i + 1u;
    let qbase = (i * att.heads + h) * hd;
    for (var d = t; d < hd; d += WG) {
        query[d] = q[qbase + d];
    }
    workgroupBarrier();
    let row = (h * att.slice + i) * att.capacity;
    let cache = kvh * att.capacity * hd;
    var m = bitcast<f32>(0xff7fffffu);
    for (var j = t; j < n; j += WG) {
        var s = 0.0;
        let kb = cache + j * hd;
        for (var d = 0u; d < hd; d++) {
            s += query[d] * k_cache[kb + d];
        }
        s *= att.scale;
        scores[row + j] = s;
        m = max(m, s);
    }
    m = reduce_max(t, m);
    var total = 0.0;
    for (var j = t; j < n; j += WG) {
        let e = exp(scores[row + j] - m);
        scores[row + j] = e;
        total += e;
    }
    total = reduce_sum(t, total);
    storageBarrier();
    workgroupBarrier();
    for (var d = t; d < hd; d += WG) {
        var o = 0.0;
        for (var j = 0u; j < n; j++) {
            o += scores[row + j] * v_cache[cache + j * hd + d];
        }
        out[qbase + d] = o / total;
    }
}
