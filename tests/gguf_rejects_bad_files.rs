//! Hostile and broken GGUF files: every one gives a typed error, never a panic, and nothing read
//! from a header makes the parser allocate more than the file itself holds.

mod common;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::EngineError;
use candlelight::gguf::{Architecture, GgufError, GgufFile, TensorType, Value};
use candlelight::store::ChunkStore;
use candlelight::store::MemoryStore;
use candlelight::tokenizer::{Tokenizer, TokenizerError};
use candlelight_fixtures::{build, FixtureSpec, GgufWriter, Quant, TensorData};
use common::alloc_watch::{watched, Watch};

#[global_allocator]
static ALLOC: Watch = Watch;

fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    block_on(GgufFile::read(&MemoryStore::from_bytes(bytes, 4096)))
}

/// Parses with the allocation watch on; returns the error and the largest allocation made.
fn parse_watched(bytes: &[u8]) -> (Result<GgufFile, GgufError>, usize) {
    let store = MemoryStore::from_bytes(bytes, 4096);
    let (r, largest, _) = watched(|| block_on(GgufFile::read(&store)));
    (r, largest)
}

/// A small valid file: a few keys and one 32×2 F32 tensor.
fn small() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()));
    w.meta("general.name", Value::String("small".into()));
    w.meta("answer", Value::U32(42));
    w.tensor(TensorData {
        name: "t".into(),
        dims: vec![32, 2],
        ty: TensorType::F32,
        bytes: vec![0; 256],
    });
    w
}

/// Byte offset of the first metadata key's length field (after magic, version and two counts).
const FIRST_KV: usize = 24;

fn set_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the tensor directory entry named `name` (its string length field).
fn tensor_entry(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    bytes
        .windows(needle.len())
        .rposition(|w| w == needle)
        .expect("tensor entry present")
}

#[test]
fn a_valid_file_round_trips() {
    let f = parse(&small().to_bytes()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.get_u64("answer").unwrap(), 42);
    assert_eq!(f.tensor_info("t").unwrap().dims, vec![32, 2]);
    assert_eq!(
        f.keys().collect::<Vec<_>>(),
        vec!["general.architecture", "general.name", "answer"]
    );
}

#[test]
fn truncation_anywhere_is_an_error() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q4_0)).to_bytes();
    let header_end = parse(&bytes).unwrap().data_offset as usize;
    let mut cuts: Vec<usize> = (0..header_end).collect();
    cuts.extend((header_end..bytes.len()).step_by(997));
    for cut in cuts {
        let (r, largest) = parse_watched(&bytes[..cut]);
        match r {
            Err(GgufError::Truncated { .. })
            | Err(GgufError::CountTooLarge { .. })
            | Err(GgufError::TensorOutOfBounds { .. }) => {}
            other => panic!("cut at {cut}: expected a truncation error, got {other:?}"),
        }
        assert!(
            largest <= bytes.len(),
            "cut at {cut}: allocated {largest} bytes"
        );
    }
}

#[test]
fn wrong_magic_and_versions() {
    let mut b = small().to_bytes();
    b[..4].copy_from_slice(b"GGML");
    assert!(matches!(parse(&b), Err(GgufError::BadMagic { found }) if &found == b"GGML"));
    for v in [0u32, 1, 4, 0x0300_0000] {
        let mut b = small().to_bytes();
        set_u32(&mut b, 4, v);
        assert!(
            matches!(parse(&b), Err(GgufError::UnsupportedVersion(x)) if x == v),
            "version {v}"
        );
    }
    assert!(matches!(
        parse(b"GG"),
        Err(GgufError::Truncated { what: "magic", .. })
    ));
    assert!(matches!(parse(b""), Err(GgufError::Truncated { .. })));
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let base = small().to_bytes();
    let cases: [(&str, usize, u64); 5] = [
        ("tensor count", 8, u64::MAX),
        ("metadata count", 16, 1 << 40),
        ("metadata key", FIRST_KV, u64::MAX / 2),
        ("metadata key", FIRST_KV, base.len() as u64),
        ("tensor count", 8, (base.len() / 8) as u64),
    ];
    for (what, at, value) in cases {
        let mut b = base.clone();
        set_u64(&mut b, at, value);
        let (r, largest) = parse_watched(&b);
        assert!(
            matches!(&r, Err(GgufError::CountTooLarge { what: w, count, .. }) if *w == what && *count == value),
            "{what} = {value}: {r:?}"
        );
        assert!(
            largest < 1 << 20,
            "{what} = {value}: allocated {largest} bytes"
        );
    }
    // An array claiming 2^61 strings, and a string value claiming 2^60 bytes.
    let mut w = GgufWriter::new();
    w.meta(
        "tokens",
        Value::Array(candlelight::gguf::Array::String(vec!["a".into()])),
    );
    let mut b = w.to_bytes();
    let len_at = FIRST_KV + 8 + "tokens".len() + 4 + 4;
    set_u64(&mut b, len_at, 1 << 61);
    let (r, largest) = parse_watched(&b);
    assert!(
        matches!(
            r,
            Err(GgufError::CountTooLarge {
                what: "array length",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(largest < 1 << 20);
    let mut w = GgufWriter::new();
    w.meta("s", Value::String("abc".into()));
    let mut b = w.to_bytes();
    set_u64(&mut b, FIRST_KV + 8 + 1 + 4, 1 << 60);
    let (r, largest) = parse_watched(&b);
    assert!(
        matches!(
            r,
            Err(GgufError::CountTooLarge {
                what: "string value",
                ..
            })
        ),
        "{r:?}"
    );
    assert!(largest < 1 << 20);
}

#[test]
fn absurd_dimensions_and_types() {
    let base = small().to_bytes();
    let entry = tensor_entry(&base, "t");
    let n_dims_at = entry + 8 + 1;
    let dims_at = n_dims_at + 4;
    let type_at = dims_at + 16;
    let offset_at = type_at + 4;

    let mut b = base.clone();
    set_u32(&mut b, n_dims_at, 5);
    assert!(matches!(parse(&b), Err(GgufError::BadDimensions { .. })));
    let mut b = base.clone();
    set_u32(&mut b, n_dims_at, 0);
    assert!(matches!(parse(&b), Err(GgufError::BadDimensions { .. })));
    let mut b = base.clone();
    set_u64(&mut b, dims_at, 0);
    assert!(matches!(parse(&b), Err(GgufError::BadDimensions { .. })));
    let mut b = base.clone();
    set_u64(&mut b, dims_at, 1 << 40);
    set_u64(&mut b, dims_at + 8, 1 << 40);
    assert!(
        matches!(parse(&b), Err(GgufError::BadDimensions { .. })),
        "element count overflow"
    );
    let mut b = base.clone();
    set_u64(&mut b, dims_at + 8, 1 << 30);
    assert!(
        matches!(parse(&b), Err(GgufError::TensorOutOfBounds { .. })),
        "tensor larger than the file"
    );
    let mut b = base.clone();
    set_u32(&mut b, type_at, 16);
    assert!(matches!(
        parse(&b),
        Err(GgufError::UnsupportedTensorType {
            type_id: 16,
            type_name: "IQ2_XXS",
            ..
        })
    ));
    let mut b = base.clone();
    set_u32(&mut b, type_at, 2); // Q4_0 needs rows that are multiples of 32: 32 is fine...
    set_u64(&mut b, dims_at, 16); // ...16 is not
    assert!(matches!(parse(&b), Err(GgufError::BadDimensions { .. })));
    let mut b = base.clone();
    set_u64(&mut b, offset_at, 1 << 20);
    assert!(matches!(
        parse(&b),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    let mut b = base.clone();
    set_u64(&mut b, offset_at, u64::MAX - 8);
    assert!(matches!(
        parse(&b),
        Err(GgufError::MisalignedTensor { .. }) | Err(GgufError::TensorOutOfBounds { .. })
    ));
    let mut b = base.clone();
    set_u64(&mut b, offset_at, 4);
    assert!(matches!(
        parse(&b),
        Err(GgufError::MisalignedTensor {
            offset: 4,
            alignment: 32,
            ..
        })
    ));
}

#[test]
fn bad_metadata() {
    let mut b = small().to_bytes();
    let type_at = FIRST_KV + 8 + "general.architecture".len();
    set_u32(&mut b, type_at, 99);
    assert!(matches!(parse(&b), Err(GgufError::UnknownValueType(99))));

    let mut w = small();
    w.meta("answer", Value::U32(7));
    assert!(matches!(parse(&w.to_bytes()), Err(GgufError::DuplicateKey(k)) if k == "answer"));

    let mut w = small();
    w.tensor(TensorData {
        name: "t".into(),
        dims: vec![32],
        ty: TensorType::F32,
        bytes: vec![0; 128],
    });
    assert!(matches!(parse(&w.to_bytes()), Err(GgufError::DuplicateTensor(t)) if t == "t"));

    let mut w = small();
    w.meta("general.alignment", Value::U32(3));
    assert!(matches!(
        parse(&w.to_bytes()),
        Err(GgufError::BadAlignment(_))
    ));

    // Arrays nested deeper than any real file.
    use candlelight::gguf::Array;
    let mut a = Array::U8(vec![1]);
    for _ in 0..8 {
        a = Array::Array(vec![a]);
    }
    let mut w = GgufWriter::new();
    w.meta("deep", Value::Array(a));
    assert!(matches!(parse(&w.to_bytes()), Err(GgufError::ArrayTooDeep)));
}

/// Rewrites a valid fixture with `edit` applied to its metadata and tensor list.
fn rewrite(edit: impl Fn(&mut Vec<(String, Value)>, &mut Vec<TensorData>)) -> Vec<u8> {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q4_0)).to_bytes();
    let store = MemoryStore::from_bytes(&bytes, 1 << 16);
    let file = block_on(GgufFile::read(&store)).unwrap();
    let mut meta: Vec<(String, Value)> = file
        .keys()
        .map(|k| (k.to_string(), file.get(k).unwrap().clone()))
        .collect();
    let mut tensors: Vec<TensorData> = file
        .tensors()
        .iter()
        .map(|t| {
            let mut raw = vec![0u8; t.size as usize];
            block_on(store.read_at(file.data_offset + t.offset, &mut raw)).unwrap();
            TensorData {
                name: t.name.clone(),
                dims: t.dims.clone(),
                ty: t.ty,
                bytes: raw,
            }
        })
        .collect();
    edit(&mut meta, &mut tensors);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.meta(&k, v);
    }
    for t in tensors {
        w.tensor(t);
    }
    w.to_bytes()
}

fn load(bytes: &[u8]) -> Result<CpuBackend, EngineError> {
    let store = MemoryStore::from_bytes(bytes, 1 << 16);
    let file = block_on(GgufFile::read(&store))?;
    block_on(CpuBackend::load(&file, &store, &mut |_, _| {}))
}

fn gguf_err(r: Result<CpuBackend, EngineError>) -> GgufError {
    match r {
        Err(EngineError::Gguf(e)) => e,
        Err(other) => panic!("expected a GGUF error, got {other}"),
        Ok(_) => panic!("expected a GGUF error, the model loaded"),
    }
}

#[test]
fn model_level_errors() {
    assert!(load(&rewrite(|_, _| {})).is_ok(), "unchanged rewrite loads");

    let e = gguf_err(load(&rewrite(|_, t| {
        t.retain(|t| t.name != "blk.1.ffn_up.weight")
    })));
    assert!(
        matches!(e, GgufError::MissingTensor(ref n) if n == "blk.1.ffn_up.weight"),
        "{e}"
    );

    let e = gguf_err(load(&rewrite(|_, t| {
        let x = t
            .iter_mut()
            .find(|t| t.name == "blk.0.attn_k.weight")
            .unwrap();
        x.dims = vec![256, 64];
        x.bytes.truncate(x.bytes.len() / 2);
    })));
    assert!(
        matches!(e, GgufError::WrongShape { ref tensor, .. } if tensor == "blk.0.attn_k.weight"),
        "{e}"
    );

    let e = gguf_err(load(&rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "general.architecture")
            .unwrap()
            .1 = Value::String("mamba".into());
    })));
    assert!(
        matches!(e, GgufError::UnknownArchitecture(ref a) if a == "mamba"),
        "{e}"
    );

    let e = gguf_err(load(&rewrite(|m, _| {
        m.retain(|(k, _)| k != "qwen2.block_count")
    })));
    assert!(
        matches!(e, GgufError::MissingKey(ref k) if k == "qwen2.block_count"),
        "{e}"
    );

    let e = gguf_err(load(&rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "qwen2.attention.head_count_kv")
            .unwrap()
            .1 = Value::U32(4); // 6 heads
    })));
    assert!(matches!(e, GgufError::BadConfig(_)), "{e}");

    let e = gguf_err(load(&rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "qwen2.block_count")
            .unwrap()
            .1 = Value::U64(u64::MAX);
    })));
    assert!(matches!(e, GgufError::BadConfig(_)), "{e}");

    let e = gguf_err(load(&rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "qwen2.embedding_length")
            .unwrap()
            .1 = Value::String("wide".into());
    })));
    assert!(matches!(e, GgufError::WrongKeyType { .. }), "{e}");
}

#[test]
fn tokenizer_level_errors() {
    let tok = |bytes: Vec<u8>| {
        let store = MemoryStore::from_bytes(&bytes, 1 << 16);
        Tokenizer::from_gguf(&block_on(GgufFile::read(&store)).unwrap())
    };
    let r = tok(rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.model")
            .unwrap()
            .1 = Value::String("t5".into());
    }));
    assert!(matches!(r, Err(TokenizerError::UnsupportedModel(ref m)) if m == "t5"));
    let r = tok(rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.pre")
            .unwrap()
            .1 = Value::String("martian".into());
    }));
    assert!(matches!(r, Err(TokenizerError::UnsupportedPreTokenizer(ref p)) if p == "martian"));
    let r = tok(rewrite(|m, _| {
        m.retain(|(k, _)| k != "tokenizer.ggml.merges")
    }));
    assert!(matches!(r, Err(TokenizerError::BadVocab(_))));
    let r = tok(rewrite(|m, _| {
        m.iter_mut()
            .find(|(k, _)| k == "tokenizer.ggml.token_type")
            .unwrap()
            .1 = Value::Array(candlelight::gguf::Array::I32(vec![1; 3]));
    }));
    assert!(matches!(r, Err(TokenizerError::BadVocab(_))));
}

#[test]
fn out_of_range_tokens_and_full_context_are_errors() {
    use candlelight::engine::Backend;
    let mut b = load(&rewrite(|_, _| {})).unwrap();
    assert!(matches!(
        block_on(b.forward(&[640])),
        Err(EngineError::InvalidToken {
            token: 640,
            vocab: 640
        })
    ));
    assert!(matches!(
        block_on(b.forward(&[])),
        Err(EngineError::EmptyPrompt)
    ));
    let long = vec![1u32; 513];
    assert!(matches!(
        block_on(b.forward(&long)),
        Err(EngineError::ContextFull {
            needed: 513,
            max: 512
        })
    ));
    assert_eq!(b.cache_len(), 0, "failed steps leave the cache as it was");
    block_on(b.forward(&[1, 2, 3])).unwrap();
    assert_eq!(b.cache_len(), 3);
}

#[test]
fn generated_files_read_back_as_specified() {
    use candlelight::gguf::ModelConfig;
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        for quant in [Quant::Q4_0, Quant::Q8_0, Quant::Q4KM, Quant::F32] {
            let spec = FixtureSpec::tiny(arch, quant);
            let bytes = build(&spec).to_bytes();
            let file = parse(&bytes).unwrap();
            assert_eq!(
                ModelConfig::from_gguf(&file).unwrap(),
                spec.config,
                "{}",
                spec.name
            );
            let c = &spec.config;
            let per_layer = 9 + 3 * usize::from(c.qkv_bias) + 2 * usize::from(c.qk_norm);
            let rope_freqs = usize::from(arch == Architecture::Llama);
            let tensors = 2 + rope_freqs + usize::from(!c.tied_embeddings) + c.n_layer * per_layer;
            assert_eq!(file.tensors().len(), tensors, "{}", spec.name);
        }
    }
}

/// Thousands of files with random bytes changed in the header (counts, lengths, types, names,
/// metadata values): parsing, building the tokenizer and loading the model either work or give
/// an error, never a panic. Seeded, so a failure reproduces.
#[test]
fn randomly_damaged_headers_never_panic() {
    use candlelight::rng::SeededRng;
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q4_0)).to_bytes();
    let header_end = parse(&bytes).unwrap().data_offset as usize;
    let mut rng = SeededRng::new(2024);
    let (mut parsed, mut loaded) = (0, 0);
    for round in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let at = (rng.next_u64() % header_end as u64) as usize;
            b[at] = match rng.next_u64() % 3 {
                0 => rng.next_u64() as u8,
                1 => b[at] ^ (1 << (rng.next_u64() % 8)),
                _ => 0xff,
            };
        }
        let outcome = std::panic::catch_unwind(|| {
            let store = MemoryStore::from_bytes(&b, 4096);
            let Ok(file) = block_on(GgufFile::read(&store)) else {
                return (false, false);
            };
            let _ = Tokenizer::from_gguf(&file).map(|t| t.encode("Hello <|im_start|> 你好", true));
            let loaded = block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).is_ok();
            (true, loaded)
        });
        let (p, l) = outcome.unwrap_or_else(|_| panic!("round {round} panicked"));
        parsed += usize::from(p);
        loaded += usize::from(l);
    }
    eprintln!("damaged headers: {parsed} of 3000 parsed, {loaded} loaded, none panicked");
    // The damage must reach both the parser's checks and what lies behind them.
    assert!(
        parsed > 300 && parsed < 3000,
        "{parsed} of 3000 damaged files parsed"
    );
    assert!(loaded > 100, "{loaded} of 3000 damaged files still loaded");
}

/// The header is read in pieces from the store (a few MiB at a time, the rest of the file never
/// touched); where the chunks of the store fall makes no difference.
#[test]
fn headers_parse_the_same_whatever_the_chunks() {
    let bytes = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q4_0)).to_bytes();
    let small = block_on(GgufFile::read(&MemoryStore::from_bytes(&bytes, 1000))).unwrap();
    let whole = block_on(GgufFile::read(&MemoryStore::from_bytes(
        &bytes,
        bytes.len(),
    )))
    .unwrap();
    assert_eq!(small.tensors(), whole.tensors());
    assert_eq!(small.data_offset, whole.data_offset);
    assert_eq!(small.keys().count(), whole.keys().count());
    let cut = MemoryStore::from_bytes(&bytes[..100], 1000);
    let err = block_on(GgufFile::read(&cut)).unwrap_err();
    assert!(
        matches!(
            err,
            GgufError::Truncated { .. } | GgufError::CountTooLarge { .. }
        ),
        "{err}"
    );
}
