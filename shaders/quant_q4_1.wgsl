// Q4_1 repacked: 4 quant words per 32-value block (value j in the low nibble of byte j, value
// j+16 in its high nibble, as Q4_0); one scale word per block: the f16 `d` low, the f16 `m`
// high. A value is d·q + m.
@group(0) @binding(0) var<storage, read> quants: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;

fn weight4(row: u32, quad: u32, k: u32) -> vec4<F> {
    let b = row * (k / 32u) + quad / 8u;
    let qi = quad % 8u;
    let w = quants[b * 4u + qi % 4u];
    let sh = (qi / 4u) * 4u;
    let q = vec4<u32>(extractBits(w, sh, 4u), extractBits(w, sh + 8u, 4u), extractBits(w, sh + 16u, 4u), extractBits(w, sh + 24u, 4u));
    let dm = unpack2x16float(scales[b]);
    return F(dm.x) * vec4<F>(q) + F(dm.y);
}
