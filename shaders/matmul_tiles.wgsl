// y = x · Wᵀ for a tile of R weight rows × TM activation rows, `weight4` from the format's
// file (or the slots of a fused matrix): the sum over k is split across the workgroup's WG
// threads, four values at a time, and reduced by the entry point (shared memory, or subgroups
// where they exist).

// A thread's share of the R × TM dot products (sums[i][r]: activation row m0+i, weight row
// weight_row(r0, r)) and of each activation row's sum of squares (normalized inputs only).
struct Partial {
    sums: array<vec4<f32>, TM>,
    squares: array<f32, TM>,
}

fn partial_sums(r0: u32, m0: u32, t: u32) -> Partial {
    var p: Partial;
    let kq = dims.k / 4u;
    let m = activation_rows();
    let x0 = first_row();
    let rows = vec4<u32>(weight_row(r0, 0u), weight_row(r0, 1u), weight_row(r0, 2u), weight_row(r0, 3u));
    for (var q = t; q < kq; q += WG) {
        let w0 = vec4<f32>(weight4(rows.x, q, dims.k));
        let w1 = vec4<f32>(weight4(rows.y, q, dims.k));
        let w2 = vec4<f32>(weight4(rows.z, q, dims.k));
        let w3 = vec4<f32>(weight4(rows.w, q, dims.k));
        let input = input_weight4(q);
        for (var i = 0u; i < TM; i++) {
            if (m0 + i < m) {
                let at = (x0 + m0 + i) * kq + q;
                let a = activation4(at, input);
                if (NORM) {
                    p.squares[i] += square4(at);
                }
                p.sums[i] += vec4<f32>(dot(w0, a), dot(w1, a), dot(w2, a), dot(w3, a));
            }
        }
    }
    return p;
}

