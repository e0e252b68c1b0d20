//! Lower-case hex, as SHA-256 digests and random ids are written everywhere here (ETags, chunk
//! records, coalescing keys, conversation ids).

pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
