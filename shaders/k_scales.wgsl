// The 6-bit scale and min of sub-block j (0..8) of super-block sb, for Q4_K and Q5_K (ggml's
// get_scale_min_k4): the 12 packed bytes are scale words 1..3 of the super-block.
fn scale_byte(sb: u32, i: u32) -> u32 {
    return extractBits(scales[sb * 4u + 1u + i / 4u], (i % 4u) * 8u, 8u);
}

fn scale_min_k4(sb: u32, j: u32) -> vec2<u32> {
    if (j < 4u) {
        return vec2<u32>(scale_byte(sb, j) & 63u, scale_byte(sb, j + 4u) & 63u);
    }
    return vec2<u32>(
        (scale_byte(sb, j + 4u) & 15u) | ((scale_byte(sb, j - 4u) >> 6u) << 4u),
        (scale_byte(sb, j + 4u) >> 4u) | ((scale_byte(sb, j) >> 6u) << 4u),
    );
}
