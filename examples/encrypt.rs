//! Seals a GGUF so that only an app holding the key can load it (store/sealed.rs): each chunk
//! AES-256-GCM on its own, so the sealed file still downloads in ranges and resumes.
//!
//! cargo run --release --example encrypt -- IN.gguf OUT.cgguf KEYFILE [CHUNK_BYTES]
//!
//! KEYFILE holds the 32-byte key (raw, or as 64 hex digits); when it does not exist, a random
//! key is made and written there (raw). Load with `Engine.load(url, { decryptionKey })`, the key
//! as a `CryptoKey` (AES-GCM) or its 32 bytes.

use candlelight::store::sealed::{AesKey, DEFAULT_CHUNK};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, keyfile] = &args[..3.min(args.len())] else {
        eprintln!("usage: encrypt IN.gguf OUT.cgguf KEYFILE [CHUNK_BYTES]");
        std::process::exit(2);
    };
    let chunk: u32 = args
        .get(3)
        .map(|c| c.parse().expect("CHUNK_BYTES is a number"))
        .unwrap_or(DEFAULT_CHUNK);
    let key = match std::fs::read(keyfile) {
        Ok(bytes) => parse_key(&bytes).expect("KEYFILE holds 32 bytes or 64 hex digits"),
        Err(_) => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the OS gives random bytes");
            std::fs::write(keyfile, key).expect("write KEYFILE");
            eprintln!("made a new key in {keyfile}");
            key.to_vec()
        }
    };
    let plain = std::fs::read(input).expect("read IN.gguf");
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("the OS gives random bytes");
    let sealed = AesKey::new(&key)
        .expect("a 32-byte key")
        .seal(&plain, chunk, nonce);
    std::fs::write(output, &sealed).expect("write OUT.cgguf");
    eprintln!(
        "{output}: {} bytes sealed in chunks of {chunk} ({} bytes)",
        plain.len(),
        sealed.len()
    );
}

fn parse_key(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() == 32 {
        return Some(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).ok()?.trim();
    candlelight::hex::decode(text).filter(|k| k.len() == 32)
}
