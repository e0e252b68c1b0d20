//! Shared by the integration tests: generated fixtures, the committed llama.cpp references.
#![allow(dead_code)]

pub mod alloc_watch;

use std::path::PathBuf;

use candlelight::block_on;
use candlelight::gguf::GgufFile;
use candlelight::store::MemoryStore;
use candlelight_fixtures::{build, FixtureSpec};
use sha2::{Digest, Sha256};

pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read_json(name: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(data(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"));
    serde_json::from_str(&text).expect("reference JSON parses")
}

pub fn node_modules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fixture's bytes, checked against the hash the reference was computed on: a change to
/// the generator must come with a rerun of scripts/llama_cpp_reference.py.
pub fn fixture_bytes(spec: &FixtureSpec, expected_sha256: &str) -> Vec<u8> {
    let bytes = build(spec).to_bytes();
    assert_eq!(
        sha256_hex(&bytes),
        expected_sha256,
        "fixture {} differs from the one llama.cpp saw; rerun scripts/llama_cpp_reference.py",
        spec.name
    );
    bytes
}

/// A model file split into odd-sized chunks, so reads cross chunk boundaries.
pub fn store(bytes: &[u8]) -> (MemoryStore, GgufFile) {
    let store = MemoryStore::from_bytes(bytes, 65_521);
    let file = block_on(GgufFile::read(&store)).expect("fixture parses");
    (store, file)
}
