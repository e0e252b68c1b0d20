// IQ4_NL repacked as Q4_0: 4 quant words per 32-value block (value j in the low nibble of byte
// j, value j+16 in its high nibble), each nibble an index into the IQ4 levels; scales are the
// blocks' f16 `d`, two per word.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let qi = quad % 8u;
    let w = quants[b * 4u + qi % 4u];
    let d = F(unpack2x16float(scales[b / 2u])[b % 2u]);
    return d * iq4_levels(w, (qi / 4u) * 4u);
}
