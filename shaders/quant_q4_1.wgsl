// Q4_1 repacked: 4 quant words per 32-value block (value j in the low nibble of byte j, value
// j+16 in its high nibble, as Q4_0); one scale word per block: the f16 `d` low, the f16 `m`
// high. A value is d·q + m.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let qi = quad % 8u;
    let w = quants[b * 4u + qi % 4u];
    let sh = (qi / 4u) * 4u;
    let q = byte_lanes(w, sh, 4u);
    let dm = unpack2x16float(scales[b]);
    return F(dm.x) * vec4<F>(q) + F(dm.y);
}
