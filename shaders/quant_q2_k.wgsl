// Q2_K repacked: per 256-value super-block, its 16 quant words as stored (two 128-value halves
// of 32 bytes; value l of 16-value run s of pass j in bits 2j..2j+1 of byte 16s + l of its half);
// and 5 scale words: `d` and `dmin` as an f16 pair, then the 16 bytes of 4-bit sub-block scales
// (low nibble) and mins (high nibble).

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let sb = row * (k / 256u) + quad / 64u;
    let v = (quad % 64u) * 4u;
    let part = v / 128u;
    let j = (v % 128u) / 32u;
    let run = (v % 32u) / 16u;
    let l = v % 16u;
    let w = quants[sb * 16u + part * 8u + run * 4u + l / 4u];
    let is = part * 8u + j * 2u + run;
    let sm = extractBits(scales[sb * 5u + 1u + is / 4u], (is % 4u) * 8u, 8u);
    let dm = unpack2x16float(scales[sb * 5u]);
    let d = F(dm.x * f32(sm & 15u));
    let m = F(dm.y * f32(sm >> 4u));
    let sh = 2u * j;
    let q = byte_lanes(w, sh, 2u);
    return d * vec4<F>(q) - vec4<F>(m);
}
