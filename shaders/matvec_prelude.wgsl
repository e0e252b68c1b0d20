// What decode's matrix × vector files (`matvec_<format>.wgsl`) start from: the quant words as
// 16-byte vectors, the scale words, and 4-bit fields of a word's bytes.
@group(0) @binding(0) var<storage, read> quants: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<u32>;

// Bits sh..sh+3 of each byte of `w`, one lane per byte.
fn nibble_indices(w: u32, sh: u32) -> vec4<u32> {
    return vec4<u32>(extractBits(w, sh, 4u), extractBits(w, sh + 8u, 4u), extractBits(w, sh + 16u, 4u), extractBits(w, sh + 24u, 4u));
}

fn nibbles(w: u32, sh: u32) -> vec4<f32> {
    return vec4<f32>(nibble_indices(w, sh));
}
