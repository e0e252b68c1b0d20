//! The GPU backend (our WGSL kernels on wgpu; natively Mesa lavapipe through Vulkan) against
//! the CPU backend on the same files: the same greedy tokens and logits within a stated
//! tolerance, on every tiny fixture and one step of the 0.5B-shaped Q8_0 (whose embedding table
//! outgrows lavapipe's 128 MiB binding and is split by rows); device loss handing the request
//! to the CPU.

mod common;

use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::{GpuBackend, GpuOptions, Wanted};
use candlelight::engine::sampler::argmax;
use candlelight::engine::{ready, Backend, EngineError, GenerateRequest, SamplingParams, Session};
use candlelight::fixture::{build, FixtureSpec, Quant};
use candlelight::gguf::{Architecture, GgufFile};
use candlelight::store::{MemoryStore, Ready};
use candlelight::tokenizer::Tokenizer;

/// Logit tolerance against the CPU backend with f32 activations (`exact_activations`), the
/// GPU's arithmetic: only summation order differs. (The CPU's default path rounds activations
/// to 8 bits as ggml does, which moves these logits by up to ~0.4: not a GPU error.)
const LOGIT_TOLERANCE: f32 = 1e-3;
/// With `shader-f16` the dequantization math runs in f16 (an 11-bit mantissa): measured up to 0.023.
const LOGIT_TOLERANCE_F16: f32 = 0.05;

fn cpu(file: &GgufFile, store: &MemoryStore) -> CpuBackend {
    let mut b = CpuBackend::load(file, store).unwrap();
    b.exact_activations(true);
    b
}

fn gpu(file: &GgufFile, store: &MemoryStore, options: GpuOptions) -> GpuBackend {
    ready(GpuBackend::load_from(
        file,
        &Ready(store),
        options,
        &mut |_, _, _| {},
    ))
    .expect("GPU backend loads")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn prompt(vocab: usize, n: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 7919 + 13) % vocab) as u32).collect()
}

/// Without `shader-f16`, the kernels dequantize in f32.
fn f32_only() -> GpuOptions {
    GpuOptions {
        wanted: Wanted {
            f16: false,
            ..Wanted::default()
        },
        ..GpuOptions::default()
    }
}

#[test]
fn gpu_and_cpu_agree_on_every_tiny_fixture() {
    let mut report = Vec::new();
    for (f16, tolerance) in [(false, LOGIT_TOLERANCE), (true, LOGIT_TOLERANCE_F16)] {
        for arch in [
            Architecture::Llama,
            Architecture::Qwen2,
            Architecture::Qwen3,
        ] {
            for quant in [Quant::Q4_0, Quant::Q8_0, Quant::Q4KM] {
                let spec = FixtureSpec::tiny(arch, quant);
                let bytes = build(&spec).to_bytes();
                let (store, file) = common::store(&bytes);
                let mut cpu = cpu(&file, &store);
                // A 16-token slice, so the 40-token prompt runs in three slices.
                let wanted = Wanted {
                    f16,
                    ..Wanted::default()
                };
                let mut gpu = gpu(
                    &file,
                    &store,
                    GpuOptions {
                        slice: 16,
                        wanted,
                        ..GpuOptions::default()
                    },
                );
                let f16 = gpu.device().1.f16;
                let vocab = cpu.config().vocab_size;
                let p = prompt(vocab, 40);
                let (mut lc, mut lg) = (cpu.prefill(&p).unwrap(), gpu.prefill(&p).unwrap());
                let mut worst = max_diff(&lc, &lg);
                for step in 0..32 {
                    let (tc, tg) = (argmax(&lc), argmax(&lg));
                    assert_eq!(tc, tg, "{}: greedy token {step} differs", spec.name);
                    lc = cpu.decode(tc).unwrap();
                    lg = gpu.decode(tg).unwrap();
                    worst = worst.max(max_diff(&lc, &lg));
                }
                assert!(
                    worst <= tolerance,
                    "{} (f16 {f16}): logits differ by {worst}",
                    spec.name
                );
                report.push(format!(
                    "{}{} {worst:.5}",
                    spec.name,
                    if f16 { " f16" } else { "" }
                ));
            }
        }
    }
    eprintln!("max |logit difference| GPU vs CPU: {}", report.join(", "));
}

/// Greedy and sampled generation through the session, where the GPU picks each token itself
/// and reads back only its id, give the CPU session's tokens.
#[test]
fn tokens_picked_on_the_gpu_match_the_host_sampler() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0)).to_bytes();
    let (store, file) = common::store(&bytes);
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let mut on_cpu = Session::new(cpu(&file, &store));
    let mut on_gpu = Session::new(gpu(&file, &store, f32_only()));
    for sampling in [
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.1,
            seed: 7,
            ..SamplingParams::default()
        },
    ] {
        let req = GenerateRequest {
            prompt: tok.encode("The GPU and the CPU", true).unwrap(),
            max_tokens: 32,
            sampling,
            ..Default::default()
        };
        let a = on_cpu.generate(&tok, &req, &mut |_| true).unwrap();
        let b = on_gpu.generate(&tok, &req, &mut |_| true).unwrap();
        assert_eq!(a.tokens.len(), 32);
        assert_eq!(
            a.tokens, b.tokens,
            "temperature {}",
            req.sampling.temperature
        );
    }
}

/// The 0.5B-shaped Q8_0 file: its 151936 × 896 embedding table is 136 MiB repacked, over
/// lavapipe's 128 MiB binding, so it runs split in two. One step agrees with the CPU.
#[test]
fn one_step_of_the_half_billion_shape_with_a_split_table() {
    let bytes = build(&FixtureSpec::qwen25_05b(Quant::Q8_0)).to_bytes();
    let store = MemoryStore::from_bytes(&bytes, 16 << 20);
    let file = GgufFile::read(&store).unwrap();
    let mut cpu = cpu(&file, &store);
    cpu.limit_context(256);
    let mut gpu = gpu(
        &file,
        &store,
        GpuOptions {
            context: 256,
            wanted: Wanted {
                binding: 128 << 20,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let p = prompt(cpu.config().vocab_size, 8);
    let (lc, lg) = (cpu.prefill(&p).unwrap(), gpu.prefill(&p).unwrap());
    let d = max_diff(&lc, &lg);
    assert_eq!(argmax(&lc), argmax(&lg));
    assert!(d <= LOGIT_TOLERANCE_F16, "logits differ by {d}");
    let (lc, lg) = (
        cpu.decode(argmax(&lc)).unwrap(),
        gpu.decode(argmax(&lg)).unwrap(),
    );
    let d2 = max_diff(&lc, &lg);
    assert!(d2 <= LOGIT_TOLERANCE_F16, "decode logits differ by {d2}");
    eprintln!("0.5B-shape Q8_0: max |logit difference| {d:.4} (prefill), {d2:.4} (decode)");
}

/// The device is lost mid-generation: the step fails with a GPU error, the session takes a CPU
/// backend, re-runs what the cache held and finishes with the tokens an all-CPU run gives.
#[test]
fn a_lost_device_hands_the_generation_to_the_cpu() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q8_0)).to_bytes();
    let (store, file) = common::store(&bytes);
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let req = GenerateRequest {
        prompt: tok.encode("lost and found", true).unwrap(),
        max_tokens: 24,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    };
    let all_cpu = Session::new(cpu(&file, &store))
        .generate(&tok, &req, &mut |_| true)
        .unwrap();

    let g = gpu(&file, &store, GpuOptions::default());
    let device = g.gpu().clone();
    let mut session: Session<Box<dyn Backend>> = Session::new(Box::new(g));
    let mut run = session.start(&req).unwrap();
    for _ in 0..8 {
        run.step(&mut session, &tok).unwrap();
    }
    device.lose();
    let err = run.step(&mut session, &tok).unwrap_err();
    assert!(
        err.is_gpu_failure(),
        "a lost device is a GPU failure: {err}"
    );
    assert!(matches!(err, EngineError::Gpu(_)));
    session.replace_backend(Box::new(cpu(&file, &store)));
    while run.step(&mut session, &tok).unwrap().is_some() {}
    let fell_back = run.finish();
    assert_eq!(fell_back.tokens, all_cpu.tokens);
}
