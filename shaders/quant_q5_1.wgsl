// Q5_1 repacked: per 32-value block, 4 words of low nibbles (as Q4_0) then the word of fifth
// bits (bit j for value j); one scale word per block: the f16 `d` low, the f16 `m` high. A
// value is d·q + m.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let qi = quad % 8u;
    let w = quants[b * 5u + qi % 4u];
    let h = quants[b * 5u + 4u];
    let sh = (qi / 4u) * 4u;
    let e = qi * 4u;
    let q = byte_lanes(w, sh, 4u) | (bit_lanes(h, e) << vec4<u32>(4u));
    let dm = unpack2x16float(scales[b]);
    return F(dm.x) * vec4<F>(q) + F(dm.y);
}
