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

    // Long answers under the schema: a list of free strings, so the budget is spent.
    let schema = json!({"type": "object", "properties": {"notes": {"type": "array",
        "items": {"type": "string"}}}, "required": ["notes"], "additionalProperties": false});
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
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let free = mean(&rates[0]);
    println!("{path}: decode tok/s, mean of {rounds} rounds of {tokens} tokens");
    for (k, (name, _)) in kinds.iter().enumerate() {
        let m = mean(&rates[k]);
        println!("  {name:<11} {m:7.2} tok/s  {:.3}x free", m / free);
    }
    Ok(())
}
