// Q5_0 repacked: per 32-value block, 4 words of low nibbles (as Q4_0) then the word of fifth
// bits (bit j for value j); scales are the blocks' f16 `d`, two per word.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let qi = quad % 8u;
    let w = quants[b * 5u + qi % 4u];
    let h = quants[b * 5u + 4u];
    let sh = (qi / 4u) * 4u;
    let e = qi * 4u;
    let q = byte_lanes(w, sh, 4u) | (bit_lanes(h, e) << vec4<u32>(4u));
    let d = F(unpack2x16float(scales[b / 2u])[b % 2u]);
    return d * (vec4<F>(q) - F(16.0));
}
