//! Prefill and decode speed of the CPU backend on one GGUF file, as one JSON line.
//!
//! cargo run --release --example bench_cpu -- MODEL.gguf [prompt_tokens] [decode_tokens] [repeats]
//!     [--profile]
//!
//! With --profile, one more decode run after the measured ones prints milliseconds per step in
//! each part of the forward pass (matmul, attention, norms, other, head) as a second JSON line.
//!
//! Token ids are fixed (not sampled) so the run measures the model, not the text. Threads follow
//! RAYON_NUM_THREADS (default: all cores).

use std::time::Instant;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::Backend;
use candlelight::gguf::GgufFile;
use candlelight::store::FileStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let profile = all.iter().any(|a| a == "--profile");
    let args: Vec<String> = all.into_iter().filter(|a| !a.starts_with("--")).collect();
    let path = args
        .first()
        .ok_or("usage: bench_cpu MODEL.gguf [prompt] [decode] [repeats]")?;
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (n_prompt, n_decode, repeats) = (arg(1, 128), arg(2, 64), arg(3, 3));
    let t = Instant::now();
    let store = FileStore::open(path)?;
    let file = block_on(GgufFile::read(&store))?;
    let mut backend = block_on(CpuBackend::load(&file, &store, &mut |_, _| {}))?;
    let load_s = t.elapsed().as_secs_f64();
    let vocab = backend.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..n_prompt as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        backend.reset();
        let t = Instant::now();
        block_on(backend.forward(&prompt))?;
        prefill.push(n_prompt as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..n_decode as u32 {
            block_on(backend.forward(&[(i * 104_729 + 7) % vocab]))?;
        }
        decode.push(n_decode as f64 / t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{{\"engine\":\"candlelight\",\"load_s\":{load_s:.3},\"prompt_tokens\":{n_prompt},\"decode_tokens\":{n_decode},\"prefill_tok_s\":{:.2},\"decode_tok_s\":{:.2}}}",
        median(&mut prefill),
        median(&mut decode)
    );
    if profile {
        backend.reset();
        block_on(backend.forward(&prompt))?;
        backend.set_profiling(true);
        for i in 0..n_decode as u32 {
            block_on(backend.forward(&[(i * 104_729 + 7) % vocab]))?;
        }
        let p = backend.profile().ok_or("profiling is off")?;
        let total: f64 = p.seconds.iter().sum::<f64>() * 1e3 / p.steps as f64;
        println!("{{\"profile\":{},\"total_ms\":{total:.3}}}", p.to_json());
    }
    Ok(())
}
