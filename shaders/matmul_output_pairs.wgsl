// Gate and up as one matrix (gate's rows, then up's): each tile takes two rows of each, and
// writes silu(gate) × up for its two columns, so the FFN's gating needs no dispatch and the
// down projection reads its input as stored.

fn weight_row(r0: u32, j: u32) -> u32 {
    let half = dims.rows / 2u;
    return min(r0 / 2u + j % 2u, half - 1u) + select(0u, half, j >= 2u);
}

fn finish(r0: u32, m0: u32, i: u32, v: vec4<f32>, scale: f32) {
    if (m0 + i >= activation_rows()) {
        return;
    }
    for (var r = 0u; r < 2u; r++) {
        let col = r0 / 2u + r;
        if (col < dims.rows / 2u) {
            let g = v[r] * scale;
            y[(m0 + i) * dims.n + col] = g / (1.0 + exp(-g)) * (v[r + 2u] * scale);
        }
    }
}
