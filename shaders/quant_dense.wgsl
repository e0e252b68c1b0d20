// Any other format, widened to f32 at upload: quants hold the values' bits; scales are unused.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    // Keeps `scales` in the layout, so every format binds alike.
    if (arrayLength(&scales) == 0u) {
        return vec4<F>();
    }
    let i = row * k + quad * 4u;
    return vec4<F>(bitcast<vec4<f32>>(vec4<u32>(quants[i], quants[i + 1u], quants[i + 2u], quants[i + 3u])));
}
