// Q8_0 for decode's matrix × vector: a block's 8 quant words (signed bytes, value j in byte j)
// in two 16-byte reads; scales are f16 `d`, two per word.

fn signed_bytes(w: u32) -> vec4<f32> {
    let v = bitcast<i32>(w);
    return vec4<f32>(vec4<i32>(extractBits(v, 0u, 8u), extractBits(v, 8u, 8u), extractBits(v, 16u, 8u), extractBits(v, 24u, 8u)));
}

fn block_dot(b: u32, a: array<vec4<f32>, 8>) -> f32 {
    let lo = quants[2u * b];
    let hi = quants[2u * b + 1u];
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(signed_bytes(lo[i]), a[i]) + dot(signed_bytes(hi[i]), a[i + 4u]);
    }
    return unpack2x16float(scales[b / 2u])[b % 2u] * s;
}
