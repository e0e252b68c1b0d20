// Picking the next token on the GPU, in the host sampler's order, so a decode step reads back
// one id: `penalize` (repetition, presence, frequency), then `argmax` (greedy) or `top_k`
// (top-k, softmax, top-p, min-p, temperature, one draw with the host's random number `r`).
// Ties go to the lower id, as on the host.

struct PickParams {
    vocab: u32,
    penalties: u32,
    top_k: u32,
    repetition: f32,
    presence: f32,
    frequency: f32,
    top_p: f32,
    min_p: f32,
    inv_temp: f32,
    r: f32,
}

@group(0) @binding(0) var<storage, read_write> logits: array<f32>;
@group(0) @binding(1) var<storage, read> seen: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> picked: array<u32>;
@group(0) @binding(3) var<uniform> params: PickParams;

const WG: u32 = 256u;
const MAX_K: u32 = 256u;

// One thread per distinct token of the penalty window: (id, count).
@compute @workgroup_size(64)
fn penalize(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.penalties) {
        return;
    }
    let s = seen[gid.x];
    var l = logits[s.x];
    if (params.repetition != 1.0) {
        l = select(l * params.repetition, l / params.repetition, l > 0.0);
    }
    logits[s.x] = l - (params.presence + params.frequency * f32(s.y));
}

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

@compute @workgroup_size(256)
fn argmax(@builtin(local_invocation_index) t: u32) {
    var bv = bitcast<f32>(0xff7fffffu);
    var bi = 0xffffffffu;
    for (var i = t; i < params.vocab; i += WG) {
        let v = logits[i];
        if (better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[t] = bv;
    best_i[t] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (t < s && better(best_v[t + s], best_i[t + s], best_v[t], best_i[t])) {
            best_v[t] = best_v[t + s];
            best_i[t] = best_i[t + s];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        picked[0] = best_i[0];
    }
}

// Order-preserving key: a larger float has a larger key.
fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

var<workgroup> count: atomic<u32>;
var<workgroup> ties: array<u32, WG>;
var<workgroup> cand_v: array<f32, MAX_K>;
var<workgroup> cand_i: array<u32, MAX_K>;
var<workgroup> sorted_v: array<f32, MAX_K>;
var<workgroup> sorted_i: array<u32, MAX_K>;

fn count_at_least(t: u32, lo: u32, hi: u32, k: u32) -> u32 {
    if (t == 0u) {
        atomicStore(&count, 0u);
    }
    workgroupBarrier();
    var c = 0u;
    for (var i = lo; i < hi; i++) {
        c += select(0u, 1u, key(logits[i]) >= k);
    }
    atomicAdd(&count, c);
    workgroupBarrier();
    let n = atomicLoad(&count);
    // Nobody may reset the count before everyone has read it.
    workgroupBarrier();
    return n;
}

@compute @workgroup_size(256)
fn top_k(@builtin(local_invocation_index) t: u32) {
    let k = params.top_k;
    // Each thread owns a contiguous range, so thread order is id order when taking ties.
    let span = (params.vocab + WG - 1u) / WG;
    let lo = min(t * span, params.vocab);
    let hi = min(lo + span, params.vocab);
    // The k-th largest key, found bit by bit from the top.
    var prefix = 0u;
    for (var bit = 31i; bit >= 0i; bit--) {
        let c = prefix | (1u << u32(bit));
        let n = count_at_least(t, lo, hi, c);
        if (n >= k) {
            prefix = c;
        }
    }
    // Everything above the threshold, then ties at it in id order until k are taken.
    if (t == 0u) {
        atomicStore(&count, 0u);
    }
    workgroupBarrier();
    var mine = 0u;
    for (var i = lo; i < hi; i++) {
        let kk = key(logits[i]);
        if (kk > prefix) {
            let at = atomicAdd(&count, 1u);
            cand_v[at] = logits[i];
            cand_i[at] = i;
        } else if (kk == prefix) {
            mine += 1u;
        }
    }
    ties[t] = mine;
    workgroupBarrier();
    let above = atomicLoad(&count);
    var before = 0u;
    for (var s = 0u; s < t; s++) {
        before += ties[s];
    }
    workgroupBarrier();
    for (var i = lo; i < hi; i++) {
        if (key(logits[i]) == prefix) {
            if (above + before < k) {
                cand_v[above + before] = logits[i];
                cand_i[above + before] = i;
            }
            before += 1u;
        }
    }
    workgroupBarrier();
    // Best first: each candidate's rank is the number of candidates better than it.
    if (t < k) {
        var rank = 0u;
        for (var j = 0u; j < k; j++) {
            rank += select(0u, 1u, better(cand_v[j], cand_i[j], cand_v[t], cand_i[t]));
        }
        sorted_v[rank] = cand_v[t];
        sorted_i[rank] = cand_i[t];
    }
    workgroupBarrier();
    if (t != 0u) {
        return;
    }
    let top = sorted_v[0];
    var sum = 0.0;
    for (var j = 0u; j < k; j++) {
        sum += exp(sorted_v[j] - top);
    }
    var keep = k;
    if (params.top_p < 1.0) {
        var acc = 0.0;
        for (var j = 0u; j < k; j++) {
            acc += exp(sorted_v[j] - top) / sum;
            if (acc >= params.top_p) {
                keep = j + 1u;
                break;
            }
        }
    }
    if (params.min_p > 0.0) {
        let floor = log(params.min_p);
        var n = 0u;
        while (n < keep && sorted_v[n] - top >= floor) {
            n += 1u;
        }
        keep = max(n, 1u);
    }
    var total = 0.0;
    for (var j = 0u; j < keep; j++) {
        total += exp((sorted_v[j] - top) * params.inv_temp);
    }
    var r = params.r * total;
    for (var j = 0u; j < keep; j++) {
        let w = exp((sorted_v[j] - top) * params.inv_temp);
        if (r < w) {
            picked[0] = sorted_i[j];
            return;
        }
        r -= w;
    }
    picked[0] = sorted_i[keep - 1u];
}
