// The one uniform every forward-step kernel shares, written by the host before each step.
struct Step {
    // Tokens in this step.
    seq: u32,
    // Position of the first of them (what the KV cache already holds).
    start: u32,
}
