// IQ4_XS repacked: per 256-value super-block, its 32 quant words as stored (8 runs of 32 values,
// each laid out as an IQ4_NL block) and 2 scale words: `d` (f16) with the 16 high scale bits
// (2 per run) above it, then the 8 low scale nibbles. A run's scale is d × (6-bit scale - 32).

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let sb = row * (k / 256u) + quad / 64u;
    let v = (quad % 64u) * 4u;
    let ib = v / 32u;
    let l = v % 32u;
    let w = quants[sb * 32u + ib * 4u + (l % 16u) / 4u];
    let head = scales[sb * 2u];
    let ls = extractBits(scales[sb * 2u + 1u], 4u * ib, 4u) | (extractBits(head, 16u + 2u * ib, 2u) << 4u);
    let d = unpack2x16float(head).x * f32(i32(ls) - 32);
    return F(d) * iq4_levels(w, (l / 16u) * 4u);
}
