// IQ4_NL for decode's matrix × vector: Q4_0's layout, each nibble an index into ggml's 16
// non-uniform levels.

var<private> LEVELS: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

fn levels(w: u32, sh: u32) -> vec4<f32> {
    let i = nibble_indices(w, sh);
    return vec4<f32>(LEVELS[i.x], LEVELS[i.y], LEVELS[i.z], LEVELS[i.w]);
}

fn block_dot(b: u32, a: array<vec4<f32>, 8>) -> f32 {
    let w = quants[b];
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(levels(w[i], 0u), a[i]) + dot(levels(w[i], 4u), a[i + 4u]);
    }
    return unpack2x16float(scales[b / 2u])[b % 2u] * s;
}
