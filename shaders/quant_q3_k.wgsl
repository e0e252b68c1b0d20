// Q3_K repacked: per 256-value super-block, 24 quant words (the 64 bytes of low bit pairs as
// stored, then the 32 bytes of high-bit masks) and 5 scale words: `d` (f16, low half), then the
// 16 sub-block scales unpacked at upload from their 6-bit packing, bias removed, as signed bytes.
// Value l of pass j of half h: bits 2j..2j+1 of low byte 32h + l, plus 4 unless bit 4h + j of
// mask byte l is set, minus 4.

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let sb = row * (k / 256u) + quad / 64u;
    let v = (quad % 64u) * 4u;
    let half = v / 128u;
    let j = (v % 128u) / 32u;
    let l = v % 32u;
    let lo = quants[sb * 24u + half * 8u + l / 4u];
    let hm = quants[sb * 24u + 16u + l / 4u];
    let sh = 2u * j;
    let hb = 4u * half + j;
    let q = vec4<i32>(byte_lanes(lo, sh, 2u) | (byte_lanes(hm, hb, 1u) << vec4<u32>(2u))) - vec4<i32>(4);
    let si = half * 8u + j * 2u + l / 16u;
    let sc = extractBits(i32(scales[sb * 5u + 1u + si / 4u]), (si % 4u) * 8u, 8u);
    let d = unpack2x16float(scales[sb * 5u]).x;
    return F(d * f32(sc)) * vec4<F>(q);
}
