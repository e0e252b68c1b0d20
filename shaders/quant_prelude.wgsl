// What every weight decoder (`shaders/quant_<format>.wgsl`) starts from: the format's quant
// words and scale words, and the unpacking of bit fields that all block formats share.
@group(0) @binding(0) var<storage, read> quants: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;

// `bits` bits at offset `sh` of each byte of `w`, one lane per byte.
fn byte_lanes(w: u32, sh: u32, bits: u32) -> vec4<u32> {
    return vec4<u32>(extractBits(w, sh, bits), extractBits(w, sh + 8u, bits), extractBits(w, sh + 16u, bits), extractBits(w, sh + 24u, bits));
}

// Bits e .. e+3 of `h`, one lane per bit (the fifth bits of Q5_0 and Q5_1).
fn bit_lanes(h: u32, e: u32) -> vec4<u32> {
    return (vec4<u32>(extractBits(h, e, 4u)) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
}

