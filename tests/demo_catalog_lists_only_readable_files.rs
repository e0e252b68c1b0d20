//! The demo's catalog (www/catalog.json) offers only files the engine reads, on both backends:
//! every tensor type an entry declares has a CPU path and a WGSL decoder; the files served by the
//! demo hold exactly the declared types, size and SHA-256; each Hugging Face entry is a `resolve`
//! URL the downloader recognises, so it asks the hub's API for the file's SHA-256.

mod common;

use std::collections::BTreeSet;

use candlelight::download::hub::HubFile;
use candlelight::engine::gpu::weights::Format;
use candlelight::gguf::{Architecture, TensorType};
use candlelight_fixtures::{build, FixtureSpec, Quant, MIXES};

fn type_named(name: &str) -> Option<TensorType> {
    (0..64)
        .filter_map(TensorType::from_id)
        .find(|t| t.name == name)
}

fn types_in(bytes: &[u8]) -> BTreeSet<String> {
    let (_, file) = common::store(bytes);
    file.tensors()
        .iter()
        .map(|t| t.ty.name.to_string())
        .collect()
}

/// The generated file a `/models/tiny-…` entry serves.
fn tiny(file_name: &str) -> Vec<u8> {
    let quants = [Quant::Q4_0, Quant::Q8_0].into_iter().chain(MIXES);
    let spec = [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ]
    .into_iter()
    .flat_map(|a| quants.clone().map(move |q| FixtureSpec::tiny(a, q)))
    .find(|s| format!("{}.gguf", s.name) == file_name)
    .unwrap_or_else(|| panic!("{file_name}: no such generated file"));
    build(&spec).to_bytes()
}

#[test]
fn every_catalog_entry_is_a_file_the_engine_reads() {
    let catalog: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/catalog.json")).unwrap(),
    )
    .unwrap();
    assert!(catalog.len() >= 3);
    for entry in &catalog {
        let url = entry["url"].as_str().unwrap();
        let declared: BTreeSet<String> = entry["types"]
            .as_array()
            .unwrap_or_else(|| panic!("{url}: no types"))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        for name in &declared {
            let ty = type_named(name).unwrap_or_else(|| panic!("{url}: {name} is not read"));
            assert!(
                Format::of(ty) != Format::Dense || matches!(name.as_str(), "F32" | "F16"),
                "{url}: {name} has no GPU decoder"
            );
        }
        if let Some(file_name) = url.strip_prefix("/models/") {
            let bytes = if file_name.starts_with("tiny-") {
                tiny(file_name)
            } else {
                std::fs::read(format!(
                    "{}/fixtures/{file_name}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap_or_else(|e| panic!("{file_name}: {e}; run scripts/real_model.sh"))
            };
            assert_eq!(types_in(&bytes), declared, "{url}: the types it holds");
            if let Some(size) = entry["size"].as_u64() {
                assert_eq!(bytes.len() as u64, size, "{url}: size");
            }
            if let Some(sha) = entry["sha256"].as_str() {
                assert_eq!(common::sha256_hex(&bytes), sha, "{url}: SHA-256");
            }
        } else {
            let hub = HubFile::parse(url, &[]).unwrap_or_else(|| panic!("{url}: not a hub URL"));
            assert!(hub.path.ends_with(".gguf"), "{url}: {}", hub.path);
        }
    }
}
