// Q6_K repacked: per 256-value super-block, 48 quant words (the 128 bytes of low nibbles, then
// the 64 bytes of high bit pairs) and 5 scale words: `d` (f16, low half), then the 16 signed
// 8-bit sub-block scales.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let sb = row * (k / 256u) + quad / 64u;
    let qs = quad % 64u;
    let n = qs / 32u;
    let rq = qs % 32u;
    let part = rq / 8u;
    let l = rq % 8u;
    let lo = quants[sb * 48u + 16u * n + 8u * (part & 1u) + l];
    let hi = quants[sb * 48u + 32u + 8u * n + l];
    let ls = 4u * (part >> 1u);
    let hs = 2u * part;
    let q = vec4<i32>(byte_lanes(lo, ls, 4u) | (byte_lanes(hi, hs, 2u) << vec4<u32>(4u))) - vec4<i32>(32);
    let si = 8u * n + l / 4u + 2u * part;
    let sc = extractBits(i32(scales[sb * 5u + 1u + si / 4u]), (si % 4u) * 8u, 8u);
    let d = unpack2x16float(scales[sb * 5u]).x;
    return F(d * f32(sc)) * vec4<F>(q);
}
