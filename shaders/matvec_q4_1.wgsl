// Q4_1 for decode's matrix × vector: a block's 4 quant words in one 16-byte read; its scale
// word holds `d` and `m` as f16, and a value is d × q + m.

fn block_dot(b: u32, a: array<vec4<f32>, 8>) -> f32 {
    let w = quants[b];
    var s = 0.0;
    var total = vec4<f32>();
    for (var i = 0u; i < 4u; i++) {
        s += dot(nibbles(w[i], 0u), a[i]) + dot(nibbles(w[i], 4u), a[i + 4u]);
        total += a[i] + a[i + 4u];
    }
    let dm = unpack2x16float(scales[b]);
    return dm.x * s + dm.y * dot(total, vec4<f32>(1.0));
}
