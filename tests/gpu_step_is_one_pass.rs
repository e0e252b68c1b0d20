//! A GPU forward step is one compute pass of at most six dispatches a layer: on every tiny
//! fixture architecture (Llama; Qwen2 with Q/K/V biases; Qwen3 with q/k norms) in Q4_0 and in
//! Q4_K_M (whose V rows are another format than Q and K, fused all the same), counted by the
//! backend's profile while it decodes. Within one 256-position attention chunk a layer is five
//! dispatches (Q·K·V, attention, output projection, gate·up, down); past it, attention adds
//! its combining dispatch.

mod common;

use candlelight::block_on;
use candlelight::engine::gpu::{GpuBackend, GpuOptions};
use candlelight::engine::{Backend, Pick, SamplingParams};
use candlelight::gguf::Architecture;
use candlelight_fixtures::{build, FixtureSpec, Quant};

/// Profiles `steps` greedy decode steps from the cache's current length.
fn decode_profile(gpu: &mut GpuBackend, steps: usize) -> candlelight::engine::gpu::Report {
    let greedy = Pick {
        params: SamplingParams::greedy(),
        seen: Vec::new(),
        r: 0.0,
    };
    gpu.profiling(true);
    let mut token = 1;
    for _ in 0..steps {
        token = block_on(gpu.pick_next(token, &greedy)).unwrap();
    }
    gpu.profiling(false).expect("a report")
}

fn per_step(r: &candlelight::engine::gpu::Report, class: &str) -> f64 {
    let c = r.classes.iter().find(|c| c.name == class);
    c.map_or(0.0, |c| c.dispatches as f64 / r.steps as f64)
}

#[test]
fn a_decode_step_is_one_pass_of_at_most_six_dispatches_a_layer() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        for quant in [Quant::Q4_0, Quant::Q4KM] {
            let spec = FixtureSpec::tiny(arch, quant);
            let bytes = build(&spec).to_bytes();
            let (store, file) = common::store(&bytes);
            let options = GpuOptions {
                context: 512,
                ..GpuOptions::default()
            };
            let mut gpu = block_on(GpuBackend::load(&file, &store, options, &mut |_, _, _| {}))
                .expect("GPU backend loads");
            let layers = gpu.config().n_layer as f64;
            let vocab = gpu.config().vocab_size as u32;
            let prompt: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % vocab).collect();
            block_on(gpu.forward(&prompt)).unwrap();
            for (chunks, per_layer) in [(1, 5.0), (2, 6.0)] {
                if chunks == 2 {
                    let more: Vec<u32> = (0..240).map(|i| (i * 11 + 5) % vocab).collect();
                    block_on(gpu.forward(&more)).unwrap();
                }
                let r = decode_profile(&mut gpu, 3);
                let what = format!("{} at {} positions", spec.name, gpu.cache_len());
                assert_eq!(r.steps, 3, "{what}");
                assert_eq!(r.passes, r.steps, "{what}: one compute pass a step");
                // Per layer: four products and one or two attention dispatches; per step: the
                // embedding, the head (norm folded in), penalties and the pick.
                assert_eq!(
                    per_step(&r, "matmul"),
                    4.0 * layers + 1.0,
                    "{what}: products"
                );
                assert_eq!(
                    per_step(&r, "attention"),
                    (per_layer - 4.0) * layers,
                    "{what}"
                );
                assert_eq!(per_step(&r, "embed"), 1.0, "{what}");
                assert_eq!(per_step(&r, "sample"), 2.0, "{what}");
                let (dispatches, _, _) = r.per_step();
                assert_eq!(dispatches, per_layer * layers + 4.0, "{what}: dispatches");
                assert_eq!(
                    r.classes.len(),
                    4,
                    "{what}: no other kernel runs: {:?}",
                    r.classes
                );
            }
        }
    }
}
