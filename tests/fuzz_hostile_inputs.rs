//! Coverage-blind mutation fuzzing of the three parsers that read what strangers write: GGUF
//! headers, chat templates, and the SSE decoder. Each target runs for `FUZZ_SECONDS` (default
//! 60) from a fixed seed and then from a random one, printed so a failure reproduces
//! (`FUZZ_SEED=<seed>` runs that one only). A panic fails the test; so does an input that takes
//! longer than 5 s (a hang in the making), an allocation beyond the budget of its target,
//! or, for SSE, events that depend on where the stream was split.
//!
//! A longer run for the numbers in a note:
//! `FUZZ_SECONDS=600 cargo test --release --test fuzz_hostile_inputs -- --nocapture`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use candlelight::block_on;
use candlelight::chat::{ChatTemplate, Message};
use candlelight::gguf::{Architecture, GgufFile, TensorType, Value};
use candlelight::openai::sse::{SseDecoder, SseEvent};
use candlelight::rng::SeededRng;
use candlelight::store::MemoryStore;
use candlelight::tokenizer::Tokenizer;
use candlelight_fixtures::{build, FixtureSpec, GgufWriter, Quant, Template, TensorData};
use common::alloc_watch::{watched, Watch};

#[global_allocator]
static ALLOC: Watch = Watch;

/// What one target's run found.
#[derive(Default)]
struct Tally {
    inputs: u64,
    accepted: u64,
    slowest: Duration,
    /// Largest single allocation over the input's size, for inputs of 16 KiB and more (below
    /// that, fixed buffers such as the parser's 64 KiB read buffer dominate).
    peak_ratio: f64,
    peak_bytes: usize,
}

/// Fuel-bound renders take up to ~0.3 s here; far past that is a loop the limits missed.
const SLOW: Duration = Duration::from_secs(5);

fn seconds() -> u64 {
    std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// The seeds to run: `FUZZ_SEED` alone, or a fixed one and one from the clock.
fn seeds(fixed: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    let random = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    vec![fixed, random]
}

/// Runs `one` on inputs made by `make` for half the time per seed; `one` returns whether the
/// input was accepted and may fail with a reason.
fn run(
    target: &str,
    fixed_seed: u64,
    budget: usize,
    mut make: impl FnMut(&mut SeededRng) -> Vec<u8>,
    one: impl Fn(&[u8]) -> Result<bool, String>,
) -> Tally {
    let mut tally = Tally::default();
    let all = seeds(fixed_seed);
    for &seed in &all {
        eprintln!("fuzz {target}: seed {seed}");
        let mut rng = SeededRng::new(seed);
        let until = Instant::now() + Duration::from_secs(seconds()) / all.len() as u32;
        while Instant::now() < until {
            let input = make(&mut rng);
            let started = Instant::now();
            let (outcome, largest, _) = watched(|| catch_unwind(AssertUnwindSafe(|| one(&input))));
            let took = started.elapsed();
            let n = tally.inputs;
            let ok = match outcome {
                Ok(Ok(ok)) => ok,
                Ok(Err(why)) => panic!("{target} seed {seed} input {n}: {why}"),
                Err(_) => panic!("{target} seed {seed} input {n} panicked"),
            };
            assert!(took < SLOW, "{target} seed {seed} input {n} took {took:?}");
            assert!(
                largest <= budget.max(input.len() * 64),
                "{target} seed {seed} input {n} ({} bytes) allocated {largest} bytes at once",
                input.len()
            );
            tally.inputs += 1;
            tally.accepted += u64::from(ok);
            tally.slowest = tally.slowest.max(took);
            tally.peak_bytes = tally.peak_bytes.max(largest);
            if input.len() >= 16 << 10 {
                tally.peak_ratio = tally.peak_ratio.max(largest as f64 / input.len() as f64);
            }
        }
    }
    eprintln!(
        "fuzz {target}: {} inputs, {} accepted, 0 panics, slowest {:?}, largest allocation {} bytes ({:.1}× its input at most from 16 KiB)",
        tally.inputs, tally.accepted, tally.slowest, tally.peak_bytes, tally.peak_ratio
    );
    tally
}

/// Values that sit on the edges parsers get wrong.
const EDGES: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

/// One to four mutations of `base` (below `limit`): bit flips, edge values as u32 or u64, cuts,
/// and spans copied elsewhere.
fn mutate(rng: &mut SeededRng, base: &[u8], limit: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.next_u64() % 4 {
        if b.is_empty() {
            break;
        }
        let at = (rng.next_u64() % limit.min(b.len()).max(1) as u64) as usize;
        match rng.next_u64() % 6 {
            0 => b[at] ^= 1 << (rng.next_u64() % 8),
            1 => b[at] = rng.next_u64() as u8,
            2 | 3 => {
                let v = EDGES[(rng.next_u64() % EDGES.len() as u64) as usize];
                let width = if rng.next_u64().is_multiple_of(2) {
                    4
                } else {
                    8
                };
                let bytes = v.to_le_bytes();
                for (i, byte) in bytes[..width].iter().enumerate() {
                    if let Some(x) = b.get_mut(at + i) {
                        *x = *byte;
                    }
                }
            }
            4 => b.truncate(at.max(1)),
            _ => {
                let len = (rng.next_u64() % 64) as usize;
                let from = (rng.next_u64() % b.len() as u64) as usize;
                let span: Vec<u8> = b[from..(from + len).min(b.len())].to_vec();
                let to = at.min(b.len());
                b.splice(to..to, span);
            }
        }
    }
    b
}

fn small_gguf() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()));
    w.meta(
        "tokens",
        Value::Array(candlelight::gguf::Array::String(vec![
            "a".into(),
            "<s>".into(),
        ])),
    );
    w.meta("answer", Value::U64(42));
    w.tensor(TensorData {
        name: "t".into(),
        dims: vec![32, 2],
        ty: TensorType::F32,
        bytes: vec![0; 256],
    });
    w.to_bytes()
}

#[test]
fn gguf_headers() {
    let tiny = build(&FixtureSpec::tiny(Architecture::Qwen2, Quant::Q4_0)).to_bytes();
    let store = MemoryStore::from_bytes(&tiny, 1 << 16);
    let header_end = block_on(GgufFile::read(&store)).unwrap().data_offset as usize;
    // The header and a little of the data: mutations land in the header.
    let corpus = [tiny[..header_end + 4096].to_vec(), small_gguf()];
    let tally = run(
        "gguf",
        1,
        8 << 20,
        |rng| {
            let base = &corpus[(rng.next_u64() % corpus.len() as u64) as usize];
            let limit = base.len().min(header_end);
            mutate(rng, base, limit)
        },
        |bytes| {
            let store = MemoryStore::from_bytes(bytes, 4096);
            let Ok(file) = block_on(GgufFile::read(&store)) else {
                return Ok(false);
            };
            // What a load builds from the header alone.
            let _ = candlelight::gguf::ModelConfig::from_gguf(&file);
            if let Ok(t) = Tokenizer::from_gguf(&file) {
                let _ = t.encode("Hello <|im_start|> 你好", true);
                let _ = ChatTemplate::from_gguf(&file, &t).map(|c| c.render(&chat(), true));
            }
            Ok(true)
        },
    );
    assert!(tally.inputs > 1000, "{} inputs", tally.inputs);
    assert!(tally.accepted > 0 && tally.accepted < tally.inputs);
}

fn chat() -> Vec<Message> {
    vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Hi <think>"),
        Message::new("assistant", "<think>\nhm\n</think>\nHello."),
        Message::new("user", "Again"),
    ]
}

/// Jinja pieces spliced into templates: loops, recursion, growth, filters, errors.
const SNIPPETS: [&str; 14] = [
    "{% for i in range(100000) %}{{ i }}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "{{ 'x' * 100000000 }}",
    "{{ messages | tojson }}",
    "{{ raise_exception('no') }}",
    "{{ messages[0]['content'].split('')|join('-') }}",
    "{% if messages[99] %}x{% endif %}",
    "{{ (messages * 1000) | length }}",
    "{{ range(10) | list | sort | reverse | join }}",
    "{{ messages[0].content | replace('', 'xxxxxxxx') }}",
    "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "{{ strftime_now('%Y') }}{{ bos_token }}",
];

#[test]
fn chat_templates() {
    let corpus: Vec<&str> = [
        Template::ChatMl,
        Template::Llama3,
        Template::DeepSeekR1,
        Template::HermesTools,
    ]
    .iter()
    .filter_map(|t| t.source())
    .collect();
    let tally = run(
        "templates",
        2,
        48 << 20,
        |rng| {
            let base = corpus[(rng.next_u64() % corpus.len() as u64) as usize];
            let mut t = base.as_bytes().to_vec();
            if rng.next_u64() % 2 == 0 {
                let s = SNIPPETS[(rng.next_u64() % SNIPPETS.len() as u64) as usize];
                let at = (rng.next_u64() % t.len() as u64) as usize;
                t.splice(at..at, s.bytes());
            }
            if rng.next_u64() % 2 == 0 {
                let limit = t.len();
                t = mutate(rng, &t, limit);
            }
            t
        },
        |bytes| {
            let source = String::from_utf8_lossy(bytes);
            let Ok(t) = ChatTemplate::new(&source, "<s>", "</s>") else {
                return Ok(false);
            };
            Ok(t.render(&chat(), true).is_ok())
        },
    );
    assert!(tally.inputs > 100, "{} inputs", tally.inputs);
}

/// Streams as providers send them, split anywhere, with garbage mixed in.
const STREAMS: [&[u8]; 4] = [
    b"data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
    b": keep-alive\r\n\r\nevent: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:[DONE]\r\n\r\n",
    b"data: {\"error\":{\"message\":\"Server busy\"}}\n\n",
    b"id: 1\nretry: 10\ndata\ndata:\n\n\n\n:\n",
];

#[test]
fn sse_streams() {
    let tally = run(
        "sse",
        3,
        8 << 20,
        |rng| {
            let mut s = Vec::new();
            for _ in 0..1 + rng.next_u64() % 6 {
                s.extend_from_slice(STREAMS[(rng.next_u64() % STREAMS.len() as u64) as usize]);
            }
            match rng.next_u64() % 8 {
                0 => s.extend(std::iter::repeat_n(
                    b'\n',
                    (rng.next_u64() % (1 << 20)) as usize,
                )),
                1 => s.extend(std::iter::repeat_n(
                    b'x',
                    (rng.next_u64() % (2 << 20)) as usize,
                )),
                _ => {}
            }
            let limit = s.len();
            mutate(rng, &s, limit)
        },
        |bytes| {
            let whole = decode(&[bytes]);
            // The same bytes cut at three places give the same events, or the same error.
            let n = bytes.len();
            let (a, b, c) = (n / 3, n / 2, (n * 7) / 8);
            let split = decode(&[&bytes[..a], &bytes[a..b], &bytes[b..c], &bytes[c..]]);
            if whole != split {
                return Err(format!("whole {whole:?} but split {split:?}"));
            }
            Ok(whole.is_ok())
        },
    );
    assert!(tally.inputs > 100, "{} inputs", tally.inputs);
}

fn decode(pieces: &[&[u8]]) -> Result<Vec<SseEvent>, String> {
    let mut d = SseDecoder::default();
    let mut events = Vec::new();
    for p in pieces {
        events.extend(d.push(p).map_err(|e| e.to_string())?);
    }
    events.extend(d.finish().map_err(|e| e.to_string())?);
    Ok(events)
}
