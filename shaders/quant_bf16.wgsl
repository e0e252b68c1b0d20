// BF16 as stored: two values per quant word (the first in the low half); a bf16 is the top half
// of an f32. Scales are unused.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    // Keeps `scales` in the layout, so every format binds alike.
    if (arrayLength(&scales) == 0u) {
        return vec4<F>();
    }
    let i = row * (k / 2u) + quad * 2u;
    let a = quants[i];
    let b = quants[i + 1u];
    return vec4<F>(bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u)));
}
