// ggml's `kvalues_iq4nl`: the 16 non-uniform levels a 4-bit IQ4 index picks from.
var<private> IQ4_LEVELS: array<f32, 16> = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

fn iq4_levels(w: u32, sh: u32) -> vec4<F> {
    let i = byte_lanes(w, sh, 4u);
    return vec4<F>(vec4<f32>(IQ4_LEVELS[i.x], IQ4_LEVELS[i.y], IQ4_LEVELS[i.z], IQ4_LEVELS[i.w]));
}
