//! Sealed (encrypted) model files: a fixture and the real SmolLM2-135M sealed chunk by chunk
//! load and generate the same tokens as the plain file; a wrong key is `decryption_failed`
//! before any weight is read; a chunk changed, swapped or cut off fails to open.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::{Architecture, GgufFile};
use candlelight::openai::{ApiError, ChatCompletionRequest, LocalModel};
use candlelight::store::sealed::{AesKey, SealedStore, HEADER_BYTES, TAG_BYTES};
use candlelight::store::{ChunkStore, MemoryStore, StoreError};
use candlelight_fixtures::{build, FixtureSpec, Quant};

const KEY: [u8; 32] = [7; 32];
const CHUNK: u32 = 64 << 10;

/// Greedy tokens of one answer from the model `store` holds.
fn answer<S: ChunkStore>(store: &S) -> Vec<u32> {
    let file = block_on(GgufFile::read(store)).expect("header parses");
    let cpu = block_on(CpuBackend::load(&file, store, &mut |_, _| {})).expect("loads");
    let mut m = LocalModel::new("m", &file, Box::new(cpu)).unwrap();
    let req: ChatCompletionRequest = serde_json::from_value(serde_json::json!({
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "temperature": 0, "max_tokens": 24
    }))
    .unwrap();
    block_on(m.start(req, "c".into(), 1)).unwrap();
    block_on(m.complete()).unwrap();
    m.tokens().to_vec()
}

fn sealed(plain: &[u8]) -> Vec<u8> {
    AesKey::new(&KEY).unwrap().seal(plain, CHUNK, *b"noncenon")
}

fn open(bytes: &[u8], key: &[u8; 32]) -> Result<SealedStore<MemoryStore, AesKey>, StoreError> {
    block_on(SealedStore::open(
        MemoryStore::from_bytes(bytes, 1 << 20),
        AesKey::new(key).unwrap(),
    ))
}

#[test]
fn a_sealed_fixture_generates_what_the_plain_one_does() {
    let plain = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q4_0)).to_bytes();
    let sealed = sealed(&plain);
    assert_eq!(
        sealed.len() as u64,
        HEADER_BYTES + plain.len() as u64 + (plain.len() as u64).div_ceil(CHUNK as u64) * TAG_BYTES
    );
    assert!(
        !sealed.windows(4).any(|w| w == b"GGUF"),
        "nothing of the plain file shows"
    );
    let store = open(&sealed, &KEY).unwrap();
    assert_eq!(store.len(), plain.len() as u64);
    let tokens = answer(&store);
    assert_eq!(tokens, answer(&MemoryStore::from_bytes(&plain, 1 << 20)));
    assert!(tokens.len() > 4);
}

#[test]
fn smollm2_sealed_generates_what_the_plain_file_does() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    let plain = std::fs::read(path).expect("scripts/real_model.sh fetches it");
    let sealed = AesKey::new(&KEY)
        .unwrap()
        .seal(&plain, 4 << 20, *b"smollm2!");
    let store = open(&sealed, &KEY).unwrap();
    assert_eq!(
        answer(&store),
        answer(&MemoryStore::from_bytes(&plain, 4 << 20))
    );
}

#[test]
fn a_wrong_key_or_a_changed_chunk_does_not_open() {
    let plain = build(&FixtureSpec::tiny(Architecture::Llama, Quant::Q8_0)).to_bytes();
    let sealed = sealed(&plain);
    let mut wrong = KEY;
    wrong[31] ^= 1;
    let e = open(&sealed, &wrong).err().expect("refused");
    assert!(matches!(e, StoreError::Decryption { index: 0 }), "{e}");
    assert_eq!(ApiError::from(e).code.as_str(), "decryption_failed");

    let stride = (CHUNK as u64 + TAG_BYTES) as usize;
    let at = |i: usize| HEADER_BYTES as usize + i * stride;
    let read_all = |bytes: &[u8]| -> Result<(), StoreError> {
        let store = open(bytes, &KEY)?;
        let mut buf = vec![0u8; store.len() as usize];
        block_on(store.read_at(0, &mut buf))
    };
    // One bit of chunk 3.
    let mut changed = sealed.clone();
    changed[at(3) + 100] ^= 1;
    assert!(matches!(
        read_all(&changed),
        Err(StoreError::Decryption { index: 3 })
    ));
    // Chunks 1 and 2 swapped.
    let mut swapped = sealed.clone();
    let (one, two) = (sealed[at(1)..at(2)].to_vec(), sealed[at(2)..at(3)].to_vec());
    swapped[at(1)..at(2)].copy_from_slice(&two);
    swapped[at(2)..at(3)].copy_from_slice(&one);
    assert!(matches!(
        read_all(&swapped),
        Err(StoreError::Decryption { index: 1 })
    ));
    // The last chunk cut off, and the header's length with it.
    let cut = &sealed[..at(2)];
    assert!(matches!(read_all(cut), Err(StoreError::NotSealed(_))));
    // A plain GGUF is no sealed file.
    assert!(matches!(
        open(&plain, &KEY).err(),
        Some(StoreError::NotSealed(_))
    ));
    assert!(read_all(&sealed).is_ok());
}
