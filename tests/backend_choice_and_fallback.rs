//! Which backend a model gets (natively the GPU is Mesa's lavapipe through Vulkan): `auto` takes
//! the GPU, `cpu` and `gpu` what they name; when the GPU is lost mid-answer `auto` finishes the
//! answer on the CPU with the tokens the CPU gives from there, and `gpu` fails with a device
//! error. Without any GPU, see tests/auto_without_a_gpu.rs.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::GpuOptions;
use candlelight::engine::{
    load_backend, Backend, BackendChoice, EngineError, FinishReason, GenerateRequest, LoadOptions,
    SamplingParams, Session,
};
use candlelight::gguf::{Architecture, GgufFile};
use candlelight::store::MemoryStore;
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::{build, FixtureSpec, Quant};

fn fixture() -> (Vec<u8>, GgufFile, MemoryStore) {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q8_0)).to_bytes();
    let (store, file) = common::store(&bytes);
    (bytes, file, store)
}

fn load(choice: BackendChoice) -> (Box<dyn Backend>, Tokenizer) {
    let (_, file, store) = fixture();
    let options = LoadOptions {
        backend: choice,
        gpu: GpuOptions::default(),
    };
    let backend = block_on(load_backend(&file, store, options, &mut |_, _, _| {})).unwrap();
    (backend, Tokenizer::from_gguf(&file).unwrap())
}

fn greedy(prompt: &[u32], max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.to_vec(),
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    }
}

#[test]
fn each_choice_loads_where_it_says() {
    let (auto, _) = load(BackendChoice::Auto);
    let p = auto.placement();
    assert_eq!(p.backend, "gpu");
    assert!(p.adapter.is_some() && p.fallback_reason.is_none(), "{p:?}");
    assert!(auto.gpu().is_some());
    let (gpu, _) = load(BackendChoice::Gpu);
    assert_eq!(gpu.placement().backend, "gpu");
    let (cpu, _) = load(BackendChoice::Cpu);
    assert_eq!(cpu.placement().backend, "cpu");
    assert!(cpu.placement().fallback_reason.is_none() && cpu.gpu().is_none());
    // The context option bounds the CPU's cache as it does the GPU's.
    let (_, file, store) = fixture();
    let options = LoadOptions {
        backend: BackendChoice::Cpu,
        gpu: GpuOptions {
            context: 100,
            ..GpuOptions::default()
        },
    };
    let small = block_on(load_backend(&file, store, options, &mut |_, _, _| {})).unwrap();
    assert_eq!(small.max_positions(), 100);
}

/// The device is lost after 8 tokens: the step that meets the loss rebuilds the KV cache on the
/// CPU from the tokens the GPU held, picks its token from the CPU's logits, and the answer runs
/// to its end; `placement` says why it moved.
#[test]
fn a_lost_device_under_auto_finishes_the_answer_on_the_cpu() {
    let (auto, tok) = load(BackendChoice::Auto);
    let device = auto.gpu().expect("auto is on the GPU").clone();
    let prompt = tok.encode("lost and found", true).unwrap();
    let mut session = Session::new(auto);
    block_on(session.start(&greedy(&prompt, 24))).unwrap();
    for _ in 0..8 {
        block_on(session.step(&tok)).unwrap();
    }
    let before = session.tokens().to_vec();
    assert_eq!(before.len(), 8);
    device.lose();
    while block_on(session.step(&tok)).unwrap().is_some() {}
    let placement = session.backend().placement();
    assert_eq!(placement.backend, "cpu");
    let reason = placement.fallback_reason.expect("the move is explained");
    assert!(reason.contains("lost"), "{reason}");
    assert!(session.backend().gpu().is_none());
    let fell_back = session.finish().unwrap();
    assert_eq!(fell_back.finish_reason, FinishReason::Length);
    assert_eq!(fell_back.tokens.len(), 24);
    assert_eq!(fell_back.tokens[..8], before[..]);

    // From there on the tokens are the CPU's: what the CPU alone generates after the prompt and
    // the GPU's eight tokens.
    let (_, file, store) = fixture();
    let cpu = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let mut rest_prompt = prompt.clone();
    rest_prompt.extend_from_slice(&before);
    let rest = block_on(Session::new(cpu).generate(&tok, &greedy(&rest_prompt, 16), &mut |_| true))
        .unwrap();
    assert_eq!(fell_back.tokens[8..], rest.tokens[..]);
}

/// `gpu` has no CPU to fall back on: the loss is the caller's error, typed as a device failure.
#[test]
fn a_lost_device_under_gpu_is_an_error() {
    let (gpu, tok) = load(BackendChoice::Gpu);
    let device = gpu.gpu().unwrap().clone();
    let mut session = Session::new(gpu);
    let prompt = tok.encode("no way back", true).unwrap();
    block_on(session.start(&greedy(&prompt, 24))).unwrap();
    block_on(session.step(&tok)).unwrap();
    block_on(session.step(&tok)).unwrap();
    device.lose();
    let err = block_on(session.step(&tok)).unwrap_err();
    assert!(err.is_gpu_failure(), "{err}");
    assert!(matches!(err, EngineError::Gpu(_)));
    assert_eq!(session.backend().placement().backend, "gpu");
}
