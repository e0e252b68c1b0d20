// Q4_0 for decode's matrix × vector: a block's 4 quant words in one 16-byte read (value j in
// the low nibble of byte j, value j+16 in its high nibble); scales are f16 `d`, two per word.

// Block b's 32 values dotted with `a` (values 0..31, four to a vector).
fn block_dot(b: u32, a: array<vec4<f32>, 8>) -> f32 {
    let w = quants[b];
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(nibbles(w[i], 0u) - vec4<f32>(8.0), a[i]) + dot(nibbles(w[i], 4u) - vec4<f32>(8.0), a[i + 4u]);
    }
    return unpack2x16float(scales[b / 2u])[b % 2u] * s;
}
