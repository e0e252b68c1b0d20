//! A machine with no GPU at all (here: a wgpu backend this machine does not have, so no adapter
//! answers): `auto` loads on the CPU and says why, `gpu` fails with `Unavailable`. One test in
//! its own binary, since it changes the process's `WGPU_BACKEND`.

mod common;

use candlelight::block_on;
use candlelight::engine::gpu::{GpuError, GpuOptions};
use candlelight::engine::{load_backend, BackendChoice, EngineError, LoadOptions};
use candlelight::gguf::Architecture;
use candlelight_fixtures::{build, FixtureSpec, Quant};

#[test]
fn without_a_gpu_auto_runs_on_the_cpu_and_gpu_is_unavailable() {
    // Metal exists only on Apple systems: no adapter can answer.
    std::env::set_var("WGPU_BACKEND", "metal");
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q4_0)).to_bytes();
    let load = |backend| {
        let (store, file) = common::store(&bytes);
        let options = LoadOptions {
            backend,
            gpu: GpuOptions::default(),
        };
        block_on(load_backend(&file, store, options, &mut |_, _, _| {}))
    };
    let auto = load(BackendChoice::Auto).expect("auto always loads");
    let placement = auto.placement();
    assert_eq!(placement.backend, "cpu");
    let reason = placement
        .fallback_reason
        .expect("auto says why it took the CPU");
    assert!(reason.starts_with("no usable GPU"), "{reason}");
    match load(BackendChoice::Gpu) {
        Err(EngineError::Gpu(GpuError::Unavailable(_))) => {}
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("a GPU backend loaded with no GPU"),
    }
}
