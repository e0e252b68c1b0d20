//! The bandwidth micro-benchmark behind the too-weak decision measures something real on both
//! backends, and its figure feeds the decision as a decode estimate.

use candlelight::block_on;
use candlelight::engine::bandwidth::{cpu_bytes_per_s, gpu_bytes_per_s};
use candlelight::engine::gpu::{Gpu, Wanted};
use candlelight::router::{assess, Capability, DeviceProfile, GpuProfile, ModelNeeds};

#[test]
fn the_probe_measures_both_backends_and_feeds_the_decision() {
    let cpu = cpu_bytes_per_s(50.0).unwrap();
    let gpu = block_on(async { gpu_bytes_per_s(&Gpu::open(Wanted::default()).await?, 20).await })
        .unwrap();
    // Any machine that runs the tests streams more than 100 MB/s through a matvec; lavapipe,
    // a software GPU, more than 10 MB/s.
    assert!(cpu.is_finite() && cpu > 1e8, "CPU {cpu} B/s");
    assert!(gpu.is_finite() && gpu > 1e7, "GPU {gpu} B/s");
    eprintln!(
        "matvec bandwidth: CPU {:.2} GB/s, GPU (lavapipe) {:.2} GB/s",
        cpu / 1e9,
        gpu / 1e9
    );
    let profile = DeviceProfile {
        webgpu: Some(GpuProfile {
            adapter: "lavapipe".into(),
            bytes_per_s: Some(gpu),
            ..GpuProfile::default()
        }),
        cpu_bytes_per_s: Some(cpu),
        ..DeviceProfile::default()
    };
    let half_b = ModelNeeds {
        file_bytes: 280e6,
        bytes_per_token: 278e6,
        stored: true,
    };
    let expected = cpu.max(gpu) * 0.8 / 278e6;
    match assess(&profile, &half_b, 0.5) {
        Capability::Capable { tokens_per_s, .. } => assert!((tokens_per_s - expected).abs() < 1e-9),
        other => panic!("{other:?}"),
    }
    assert!(!assess(&profile, &half_b, expected * 2.0).is_capable());
}
