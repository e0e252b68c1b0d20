// Rows stored as they are: y[m][row0 + r] = sum × row_scale (+ bias[row0 + r]), or added to
// what y holds for a residual.

fn weight_row(r0: u32, j: u32) -> u32 {
    return min(r0 + j, dims.rows - 1u);
}

fn finish(r0: u32, m0: u32, i: u32, v: vec4<f32>, scale: f32) {
    if (m0 + i >= activation_rows()) {
        return;
    }
    for (var r = 0u; r < R; r++) {
        if (r0 + r < dims.rows) {
            let col = dims.row0 + r0 + r;
            let at = (m0 + i) * dims.n + col;
            let o = v[r] * scale + bias(col);
            y[at] = select(o, y[at] + o, dims.accumulate != 0u);
        }
    }
}
