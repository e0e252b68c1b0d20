//! What constrained decoding costs on the CPU: decode tok/s of one model answering freely and
//! under a JSON schema, and making a forced tool call, in alternating rounds of one sitting;
//! and the one-off cost of a model's first constrained request (the vocabulary's tables).
//!
//! cargo run --release --example bench_structured -- [MODEL.gguf] [tokens] [rounds]
//!
//! The default model is the 0.5B-shaped Q4_0 fixture (`make_fixtures -- fixtures bench`).

use std::time::Instant;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::gguf::GgufFile;
use candlelight::openai::{ChatCompletionRequest, LocalModel};
use candlelight::store::FileStore;
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "fixtures/qwen2.5-0.5b-shape-q4_0.gguf".into());
    let tokens: u64 = args.next().map_or(Ok(64), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let store = FileStore::open(&path)?;
    let file = block_on(GgufFile::read(&store))?;
    let backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {}))?;
    let mut model = LocalModel::new("bench", &file, Box::new(backend))?;

    // Rows of integers, bounded strings and enums, at least 16 of them, so the budget is spent
    // inside the schema.
    let row = json!({"type": "object", "properties": {"id": {"type": "integer"},
        "name": {"type": "string", "maxLength": 12}, "tags": {"type": "array", "maxItems": 3,
        "items": {"enum": ["red", "green", "blue"]}}}, "required": ["id", "name", "tags"],
        "additionalProperties": false});
    let schema = json!({"type": "object", "properties": {"rows": {"type": "array",
        "minItems": 16, "items": row}}, "required": ["rows"], "additionalProperties": false});
    let base = json!({"messages": [{"role": "user", "content": "Write notes about the sea."}],
        "max_tokens": tokens, "temperature": 0.8});
    let mut json_mode = base.clone();
    json_mode["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "notes", "schema": schema, "strict": true}});
    let mut tool = base.clone();
    tool["tools"] =
        json!([{"type": "function", "function": {"name": "note", "parameters": schema}}]);
    tool["tool_choice"] = json!("required");
    let has_tools = model.prompt(&serde_json::from_value(tool.clone())?).is_ok();

    let mut run = |body: &Value, seed: usize| -> Result<(f64, usize), Box<dyn std::error::Error>> {
        let mut body = body.clone();
        body["seed"] = seed.into();
        let req: ChatCompletionRequest = serde_json::from_value(body)?;
        block_on(model.start(req, "bench".into(), 0)).map_err(|e| e.to_string())?;
        let answer = block_on(model.complete())?;
        Ok((
            answer.timings.decode_tokens_per_s,
            answer.timings.decode_tokens,
        ))
    };
    let t = Instant::now();
    run(&json_mode, 0)?;
    println!(
        "first constrained request (vocabulary tables, schema compile, {} tokens): {:.0} ms",
        tokens,
        t.elapsed().as_secs_f64() * 1000.0
    );
    run(&base, 0)?;
    let kinds: Vec<(&str, &Value)> = if has_tools {
        vec![
            ("free", &base),
            ("json_schema", &json_mode),
            ("tool call", &tool),
        ]
    } else {
        vec![("free", &base), ("json_schema", &json_mode)]
    };
    let mut rates = vec![Vec::new(); kinds.len()];
    for round in 0..rounds {
        for (k, (name, body)) in kinds.iter().enumerate() {
            let (rate, n) = run(body, round + 1)?;
            println!("round {round} {name:<11} {rate:7.2} tok/s over {n} tokens");
            rates[k].push(rate);
        }
    }
    // The constraint's own share, without the forward pass's noise: the last schema answer's
    // tokens replayed through a fresh constraint, mask and advance timed per token.
    run(&json_mode, 0)?;
    let replay = {
        use candlelight::engine::Constraint;
        let answer = model.tokens().to_vec();
        let tokenizer = model.tokenizer().clone();
        let grammars = candlelight::structured::Grammars::new(&tokenizer)?;
        let rule = candlelight::structured::OutputRule::json(Some(&schema), true, false)?;
        let mut c = grammars.constraint(&rule)?;
        let mut logits = vec![0.0f32; tokenizer.vocab_size()];
        let t = Instant::now();
        for &token in &answer {
            logits.fill(0.0);
            c.mask(&mut logits, tokenizer.stop_tokens())?;
            c.accept(token)?;
        }
        t.elapsed().as_secs_f64() * 1e6 / answer.len().max(1) as f64
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let free = median(&rates[0]);
    println!("{path}: decode tok/s, median of {rounds} rounds of {tokens} tokens");
    for (k, (name, _)) in kinds.iter().enumerate() {
        let m = median(&rates[k]);
        println!("  {name:<11} {m:7.2} tok/s  {:.3}x free", m / free);
    }
    println!(
        "  mask and advance: {replay:.0} µs a token, {:.1}% of a free step ({:.1} ms)",
        replay / (1e6 / free) * 100.0,
        1000.0 / free
    );
    Ok(())
}
