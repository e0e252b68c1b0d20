//! RoPE angle tables, computed once for both backends the way ggml does (theta advanced by
//! repeated multiplication in f32), so GPU, CPU and llama.cpp rotate by the same angles.

/// cos and sin for positions `start..start + len`, `head_dim / 2` pairs each; `factors` are
/// Llama 3's per-pair frequency divisors when the file has them.
pub fn tables(
    head_dim: usize,
    theta_base: f64,
    factors: Option<&[f32]>,
    start: usize,
    len: usize,
) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let scale = (theta_base as f32).powf(-2.0 / head_dim as f32);
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in start..start + len {
        let mut theta = p as f32;
        for i in 0..half {
            let t = match factors {
                Some(f) => theta / f[i],
                None => theta,
            };
            cos.push(t.cos());
            sin.push(t.sin());
            theta *= scale;
        }
    }
    (cos, sin)
}
