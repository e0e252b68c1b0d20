//! GPU backend against CPU backend on one GGUF file, in the same run: prefill and decode tok/s,
//! and the GPU's achieved weight bandwidth (weight bytes a decode step reads × tokens/s).
//!
//! cargo run --release --example bench_gpu -- MODEL.gguf [prompt] [decode] [repeats] [--gpu-only] [--spec-gbps N] [--profile] [--deep N]
//!
//! Natively the GPU is the first Vulkan adapter (`WGPU_BACKEND=vulkan`; Mesa lavapipe, a
//! software rasterizer, on machines without one). GPU decode picks each token on the GPU and
//! reads back its id, as generation does; CPU decode runs fixed ids and reads the logits.
//! `--spec-gbps` is the GPU's memory bandwidth by specification, to print the fraction achieved.
//! `--profile` then decodes once more with profiling on: dispatches per token and per layer,
//! CPU time to encode a step, and GPU time per kernel class (timestamp queries, where the
//! adapter has them; asking for them is the only change to the timed runs). `--deep N` also
//! times decode after an N-token prompt, against decode after the short one (attention over a
//! long context).

use std::time::Instant;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::{GpuBackend, GpuOptions};
use candlelight::engine::{Backend, Pick, SamplingParams};
use candlelight::gguf::GgufFile;
use candlelight::store::FileStore;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let gpu_only = all.iter().any(|a| a == "--gpu-only");
    let profile = all.iter().any(|a| a == "--profile");
    let value = |flag: &str| -> Option<f64> {
        let i = all.iter().position(|a| a == flag)?;
        all.get(i + 1)?.parse().ok()
    };
    let spec_gbps = value("--spec-gbps");
    let deep = value("--deep").map(|d| d as usize);
    let mut args = Vec::new();
    let mut i = 0;
    while i < all.len() {
        match all[i].as_str() {
            "--spec-gbps" | "--deep" => i += 1,
            a if a.starts_with("--") => {}
            a => args.push(a.to_string()),
        }
        i += 1;
    }
    let path = args.first().ok_or(
        "usage: bench_gpu MODEL.gguf [prompt] [decode] [repeats] [--gpu-only] [--spec-gbps N] [--profile] [--deep N]",
    )?;
    let nums: Vec<usize> = args.iter().skip(1).filter_map(|s| s.parse().ok()).collect();
    let arg = |i: usize, d: usize| nums.get(i).copied().unwrap_or(d);
    let (n_prompt, n_decode, repeats) = (arg(0, 128), arg(1, 128), arg(2, 3));
    let store = FileStore::open(path.as_str())?;
    let file = block_on(GgufFile::read(&store))?;
    let name = std::path::Path::new(path.as_str())
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());

    let t = Instant::now();
    let context = n_prompt.max(deep.unwrap_or(0)) + n_decode + 8;
    let mut options = GpuOptions {
        context,
        ..GpuOptions::default()
    };
    options.wanted.timestamps = profile;
    let mut gpu = block_on(GpuBackend::load(&file, &store, options, &mut |_, _, _| {}))?;
    let gpu_load_s = t.elapsed().as_secs_f64();
    let vocab = gpu.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..n_prompt as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    let greedy = Pick {
        params: SamplingParams::greedy(),
        seen: Vec::new(),
        r: 0.0,
    };

    let (mut gp, mut gd) = (Vec::new(), Vec::new());
    // One warm-up round compiles the pipelines and touches every buffer.
    for round in 0..=repeats {
        gpu.reset();
        let t = Instant::now();
        let logits = block_on(gpu.forward(&prompt))?;
        let prefill = n_prompt as f64 / t.elapsed().as_secs_f64();
        let mut token = candlelight::engine::sampler::argmax(&logits);
        let t = Instant::now();
        for _ in 0..n_decode {
            token = block_on(gpu.pick_next(token, &greedy))?;
        }
        if round > 0 {
            gp.push(prefill);
            gd.push(n_decode as f64 / t.elapsed().as_secs_f64());
        }
    }
    let (gp, gd) = (median(gp), median(gd));
    let (adapter, caps) = gpu.device();
    let adapter = adapter.to_string();
    let bytes = gpu.decode_bytes();
    let (weight_mem, other_mem) = gpu.memory_bytes();
    let gbps = bytes as f64 * gd / 1e9;
    println!(
        "file {name}: GPU {adapter} (f16 {}, subgroups {}), loaded in {gpu_load_s:.2} s",
        caps.f16, caps.subgroups
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("GPU memory: {:.1} MiB of weights, {:.1} MiB of KV cache, activations and scratch ({context} positions)", mib(weight_mem), mib(other_mem));
    println!("GPU: prefill {gp:.1} tok/s, decode {gd:.2} tok/s; {:.1} MiB of weights per decode token: {gbps:.2} GB/s", bytes as f64 / (1 << 20) as f64);
    if let Some(spec) = spec_gbps {
        println!(
            "GPU weight bandwidth: {:.1}% of the {spec} GB/s specification",
            100.0 * gbps / spec
        );
    }
    let mut deep_json = String::new();
    if let Some(n) = deep {
        let long: Vec<u32> = (0..n as u32).map(|i| (i * 7919 + 13) % vocab).collect();
        gpu.reset();
        let t = Instant::now();
        let logits = block_on(gpu.forward(&long))?;
        let deep_prefill = n as f64 / t.elapsed().as_secs_f64();
        let mut token = candlelight::engine::sampler::argmax(&logits);
        let t = Instant::now();
        for _ in 0..n_decode {
            token = block_on(gpu.pick_next(token, &greedy))?;
        }
        let deep_decode = n_decode as f64 / t.elapsed().as_secs_f64();
        println!(
            "GPU after a {n}-token prompt: prefill {deep_prefill:.1} tok/s, decode {deep_decode:.2} tok/s; decode after {n_prompt} positions is {:.2}x decode after {n}",
            gd / deep_decode
        );
        deep_json = format!(",\"deep_positions\":{n},\"deep_prefill_tok_s\":{deep_prefill:.2},\"deep_decode_tok_s\":{deep_decode:.2},\"short_over_deep_decode\":{:.3}", gd / deep_decode);
    }
    let profile_json = match profile {
        true => print_profile(&mut gpu, &prompt, n_decode, &greedy)?,
        false => String::new(),
    };
    drop(gpu);

    let mut cpu_figures = String::new();
    if !gpu_only {
        let mut cpu = block_on(CpuBackend::load(&file, &store, &mut |_, _| {}))?;
        let (mut cp, mut cd) = (Vec::new(), Vec::new());
        for round in 0..=repeats {
            cpu.reset();
            let t = Instant::now();
            block_on(cpu.forward(&prompt))?;
            let prefill = n_prompt as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..n_decode as u32 {
                block_on(cpu.forward(&[(i * 104_729 + 7) % vocab]))?;
            }
            if round > 0 {
                cp.push(prefill);
                cd.push(n_decode as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (cp, cd) = (median(cp), median(cd));
        println!(
            "CPU ({} threads): prefill {cp:.1} tok/s, decode {cd:.2} tok/s",
            rayon_threads()
        );
        println!("GPU / CPU: prefill {:.2}x, decode {:.2}x", gp / cp, gd / cd);
        cpu_figures = format!(",\"cpu_prefill_tok_s\":{cp:.2},\"cpu_decode_tok_s\":{cd:.2}");
    }
    println!(
        "{{\"file\":\"{name}\",\"adapter\":\"{adapter}\",\"prompt_tokens\":{n_prompt},\"decode_tokens\":{n_decode},\"gpu_prefill_tok_s\":{gp:.2},\"gpu_decode_tok_s\":{gd:.2},\"decode_weight_bytes\":{bytes},\"gpu_weight_gbps\":{gbps:.3}{}{cpu_figures}{deep_json}{profile_json}}}",
        spec_gbps.map_or(String::new(), |s| format!(",\"spec_gbps\":{s},\"fraction_of_spec\":{:.4}", gbps / s))
    );
    Ok(())
}

/// One more decode of `n_decode` tokens after the prompt, profiled; prints the table and
/// returns its JSON fields.
fn print_profile(
    gpu: &mut GpuBackend,
    prompt: &[u32],
    n_decode: usize,
    greedy: &Pick,
) -> Result<String, Box<dyn std::error::Error>> {
    gpu.reset();
    gpu.profiling(true);
    let logits = block_on(gpu.forward(prompt))?;
    let r = gpu.profiling(false).ok_or("profile")?;
    println!(
        "profile of the {}-token prompt ({} steps): {} dispatches, CPU encode {:.1} µs",
        prompt.len(),
        r.steps,
        r.dispatches,
        r.encode_ns as f64 / 1e3
    );
    print_classes(&r, 1.0);
    let mut token = candlelight::engine::sampler::argmax(&logits);
    gpu.profiling(true);
    for _ in 0..n_decode {
        token = block_on(gpu.pick_next(token, greedy))?;
    }
    let r = gpu.profiling(false).ok_or("profile")?;
    let (dispatches, encode_us, submit_us) = r.per_step();
    let layers = gpu.config().n_layer;
    println!(
        "profile over {} decode steps at positions {}..{}: {dispatches:.1} dispatches and {:.1} passes per token, {} per layer; CPU encode {encode_us:.1} µs and submit {submit_us:.1} µs per token",
        r.steps,
        prompt.len(),
        prompt.len() + n_decode,
        r.passes as f64 / r.steps.max(1) as f64,
        gpu.layer_dispatches()
    );
    println!("GPU time: {}", r.timing);
    let steps = r.steps.max(1) as f64;
    print_classes(&r, steps);
    let classes: Vec<String> = r
        .classes
        .iter()
        .map(|c| {
            format!(
                "\"{}\":{{\"dispatches\":{:.2},\"gpu_us\":{:.2}}}",
                c.name,
                c.dispatches as f64 / steps,
                c.gpu_ns / steps / 1e3
            )
        })
        .collect();
    Ok(format!(
        ",\"profile\":{{\"dispatches_per_token\":{dispatches:.2},\"dispatches_per_layer\":{},\"layers\":{layers},\"encode_us_per_token\":{encode_us:.2},\"submit_us_per_token\":{submit_us:.2},\"classes\":{{{}}}}}",
        gpu.layer_dispatches(),
        classes.join(",")
    ))
}

/// Each kernel class's dispatches and GPU time, per `per` steps.
fn print_classes(r: &candlelight::engine::gpu::Report, per: f64) {
    let total: f64 = r.classes.iter().map(|c| c.gpu_ns).sum();
    println!("| kernel class | dispatches | GPU µs | share |");
    println!("|---|---|---|---|");
    for c in &r.classes {
        println!(
            "| {} | {:.1} | {:.1} | {:.1}% |",
            c.name,
            c.dispatches as f64 / per,
            c.gpu_ns / per / 1e3,
            100.0 * c.gpu_ns / total.max(1.0)
        );
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
