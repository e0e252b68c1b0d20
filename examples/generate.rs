//! Streams a chat reply from a GGUF file on the CPU and prints a timings line.
//!
//! cargo run --release --example generate -- MODEL.gguf "prompt" [max_tokens]
//! cargo run --release --example generate -- --demo "prompt"
//!
//! `--demo` writes a generated Qwen3-architecture model (random weights, so the text is noise;
//! nothing is downloaded) to fixtures/demo.gguf and runs it.

use std::io::Write;

use candlelight::block_on;
use candlelight::chat::{ChatTemplate, Message, ThinkSplitter};
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::{GenerateRequest, SamplingParams, Session};
use candlelight::gguf::GgufFile;
use candlelight::store::FileStore;
use candlelight::tokenizer::Tokenizer;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path = args
        .next()
        .ok_or("usage: generate MODEL.gguf|--demo \"prompt\" [max_tokens]")?;
    if path == "--demo" {
        path = "fixtures/demo.gguf".into();
        if !std::path::Path::new(&path).exists() {
            std::fs::create_dir_all("fixtures")?;
            let spec = candlelight_fixtures::FixtureSpec::tiny(
                candlelight::gguf::Architecture::Qwen3,
                candlelight_fixtures::Quant::Q4KM,
            );
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
            candlelight_fixtures::build(&spec).write_to(&mut f)?;
            eprintln!("wrote {path} (random weights: expect noise, not language)");
        }
    }
    let prompt = args.next().unwrap_or_else(|| "Hello! Who are you?".into());
    let max_tokens = args.next().map(|s| s.parse()).transpose()?.unwrap_or(128);

    let load = std::time::Instant::now();
    let store = FileStore::open(&path)?;
    let file = block_on(GgufFile::read(&store))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let template = ChatTemplate::from_gguf(&file, &tokenizer)?;
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {}))?;
    eprintln!(
        "loaded {path} in {:.0} ms",
        load.elapsed().as_secs_f64() * 1000.0
    );

    let text = template.render(&[Message::new("user", &prompt)], true)?;
    let in_think = text.trim_end().ends_with("<think>");
    let req = GenerateRequest {
        prompt: tokenizer.encode(&text, true)?,
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.7,
            seed: 42,
            ..SamplingParams::default()
        },
        ..GenerateRequest::default()
    };
    let mut session = Session::new(backend);
    let mut think = ThinkSplitter::new(in_think);
    let mut out = std::io::stdout();
    let mut show = |d: candlelight::chat::Split| {
        if !d.reasoning.is_empty() {
            let _ = write!(out, "\x1b[2m{}\x1b[0m", d.reasoning);
        }
        let _ = write!(out, "{}", d.content);
        let _ = out.flush();
    };
    let result = block_on(session.generate(&tokenizer, &req, &mut |piece| {
        show(think.push(piece));
        true
    }))?;
    show(think.finish());
    let t = result.timings;
    println!();
    println!(
        "timings: prompt {} tok, prefill {:.1} tok/s, ttft {:.0} ms, decode {} tok at {:.1} tok/s, finish {:?}",
        result.usage.prompt_tokens,
        t.prefill_tokens_per_s,
        t.time_to_first_token_ms,
        t.decode_tokens,
        t.decode_tokens_per_s,
        result.finish_reason
    );
    Ok(())
}
