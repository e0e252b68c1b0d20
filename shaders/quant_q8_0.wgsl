// Q8_0 repacked: 8 quant words per 32-value block; scales are the blocks' f16 `d`, two per word.

fn block_scale(b: u32) -> F {
    return F(unpack2x16float(scales[b / 2u])[b % 2u]);
}

// Values 4*quad .. 4*quad+3 of `row`, a row of k values.
fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let w = i32(quants[b * 8u + quad % 8u]);
    let q = vec4<i32>(extractBits(w, 0u, 8u), extractBits(w, 8u, 8u), extractBits(w, 16u, 8u), extractBits(w, 24u, 8u));
    return block_scale(b) * vec4<F>(q);
}
