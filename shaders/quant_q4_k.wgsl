// Q4_K repacked: per 256-value super-block, 32 quant words (64-value groups: value l of a group
// in the low nibble of byte l, value 32+l in its high nibble) and 4 scale words: `d` and `dmin`
// as an f16 pair, then the 12 bytes of packed 6-bit sub-block scales and mins (k_scales.wgsl).

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let sb = row * (k / 256u) + quad / 64u;
    let qs = quad % 64u;
    let g = qs / 16u;
    let r = qs % 16u;
    let high = r / 8u;
    let w = quants[sb * 32u + g * 8u + r % 8u];
    let sh = high * 4u;
    let j = 2u * g + high;
    let sm = scale_min_k4(sb, j);
    let dm = unpack2x16float(scales[sb * 4u]);
    let d = F(dm.x * f32(sm.x));
    let m = F(dm.y * f32(sm.y));
    let q = byte_lanes(w, sh, 4u);
    return d * vec4<F>(q) - vec4<F>(m);
}
