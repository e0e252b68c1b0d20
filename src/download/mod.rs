//! Getting one model file into a chunk store over HTTP: which byte ranges are still missing,
//! what the server's headers say (size, Range support, whether the file changed), where a hub
//! keeps a file's SHA-256 (`hub`), how long to wait before trying again. The fetching itself runs
//! in the browser (`fetch.rs`, and `remote.rs` for what a server says without a download; wasm
//! only).

#[cfg(target_arch = "wasm32")]
pub mod fetch;
pub mod hub;
#[cfg(target_arch = "wasm32")]
pub mod remote;

use std::ops::Range;

/// Chunk size for new downloads: big enough that IndexedDB writes stay few, small enough that a
/// cut costs little.
pub const DEFAULT_CHUNK_SIZE: u64 = 16 << 20;

/// Failures of a download, each with the cause a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DownloadError {
    #[error("network error fetching {url}: {message}")]
    Network { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("{url} does not say how long the file is (no Content-Length or Content-Range)")]
    UnknownLength { url: String },
    #[error("{url} sent {got} bytes where {expected} were expected")]
    WrongLength {
        url: String,
        expected: u64,
        got: u64,
    },
    #[error("{url} answered bytes from {got} where bytes from {asked} were asked for")]
    WrongRange { url: String, asked: u64, got: u64 },
    #[error("not enough storage: {needed} bytes needed, {available} available")]
    Quota { needed: u64, available: u64 },
    #[error("the browser refused to store more: {0}")]
    QuotaWrite(String),
    #[error("the file's SHA-256 is {actual}, expected {expected}")]
    Integrity { expected: String, actual: String },
    #[error("download aborted")]
    Aborted,
    #[error("storage error: {0}")]
    Storage(String),
}

/// The chunks `0..n_chunks` not in `present`, as runs of consecutive indices: one HTTP Range
/// request per run.
pub fn missing_runs(n_chunks: u64, present: &[u64]) -> Vec<Range<u64>> {
    let mut have: Vec<u64> = present.iter().copied().filter(|&i| i < n_chunks).collect();
    have.sort_unstable();
    have.dedup();
    let mut runs = Vec::new();
    let mut next = 0;
    for &i in have.iter().chain(std::iter::once(&n_chunks)) {
        if i > next {
            runs.push(next..i);
        }
        next = i + 1;
    }
    runs
}

/// Number of chunks of `chunk_size` in a file of `len` bytes.
pub fn chunk_count(len: u64, chunk_size: u64) -> u64 {
    len.div_ceil(chunk_size.max(1))
}

/// The byte range of chunks `run`, inclusive at the end as HTTP writes it.
pub fn byte_range(run: &Range<u64>, chunk_size: u64, len: u64) -> (u64, u64) {
    let start = run.start * chunk_size;
    let end = (run.end * chunk_size).min(len);
    (start, end.saturating_sub(1))
}

/// `Content-Range: bytes START-END/TOTAL` → (start, end, total); None if absent or odd.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, end, total))
}

/// The SHA-256 in an `X-Linked-Etag` header (Hugging Face's LFS object hash), lower-case hex;
/// quoted, maybe weak. Never read a plain `ETag` so: a CDN's may look the same and be no hash.
pub fn sha256_from_linked_etag(value: &str) -> Option<String> {
    let v = value.trim().trim_start_matches("W/").trim_matches('"');
    (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_lowercase())
}

/// Whether two `ETag` values name the same version, by HTTP's weak comparison: `W/"x"` and
/// `"x"` are the same, surrounding blanks do not count, and the tag itself must match exactly.
pub fn same_etag(a: &str, b: &str) -> bool {
    let opaque = |v: &str| v.trim().trim_start_matches("W/").trim().to_string();
    opaque(a) == opaque(b)
}

/// Whether the file changed between two versions seen: a different size, or ETags both known
/// and not the same by [`same_etag`].
pub fn version_changed(
    (size_a, etag_a): (u64, Option<&str>),
    (size_b, etag_b): (u64, Option<&str>),
) -> bool {
    size_a != size_b || matches!((etag_a, etag_b), (Some(a), Some(b)) if !same_etag(a, b))
}

/// A 206 must start where it was asked to: one that starts elsewhere would be stored at the
/// wrong offset and reported as progress.
pub fn check_range_start(url: &str, asked: u64, got: u64) -> Result<(), DownloadError> {
    match asked == got {
        true => Ok(()),
        false => Err(DownloadError::WrongRange {
            url: url.into(),
            asked,
            got,
        }),
    }
}

pub use crate::retry::backoff_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_chunks_become_runs() {
        assert_eq!(missing_runs(5, &[]), vec![0..5]);
        assert_eq!(missing_runs(5, &[0, 1, 2, 3, 4]), Vec::<Range<u64>>::new());
        assert_eq!(missing_runs(6, &[0, 1, 4]), vec![2..4, 5..6]);
        assert_eq!(missing_runs(3, &[2, 9, 2]), vec![0..2]);
        assert_eq!(byte_range(&(2..4), 10, 35), (20, 34));
        assert_eq!(byte_range(&(0..1), 10, 35), (0, 9));
        assert_eq!(chunk_count(35, 10), 4);
        assert_eq!(chunk_count(0, 10), 0);
    }

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, 99, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        let h = "a".repeat(64);
        assert_eq!(
            sha256_from_linked_etag(&format!("\"{h}\"")),
            Some(h.clone())
        );
        assert_eq!(
            sha256_from_linked_etag(&format!("W/\"{}\"", h.to_uppercase())),
            Some(h)
        );
        assert_eq!(sha256_from_linked_etag("\"abc-123\""), None);
    }

    #[test]
    fn etags_compare_weakly_and_ranges_must_start_where_asked() {
        assert!(same_etag("W/\"abc\"", "\"abc\""));
        assert!(same_etag(" \"abc\"", "\"abc\" "));
        assert!(!same_etag("\"abc\"", "\"abd\""));
        assert!(!same_etag("\"abc\"", "\"ABC\""));
        // A CDN that answers the resume with a weak ETag is the same file, not a new one.
        assert!(!version_changed(
            (10, Some("\"v1\"")),
            (10, Some("W/\"v1\""))
        ));
        assert!(version_changed((10, Some("\"v1\"")), (10, Some("\"v2\""))));
        assert!(version_changed((10, None), (11, None)));
        assert!(!version_changed((10, Some("\"v1\"")), (10, None)));
        assert_eq!(check_range_start("u", 1 << 20, 1 << 20), Ok(()));
        assert_eq!(
            check_range_start("u", 1 << 20, 0),
            Err(DownloadError::WrongRange {
                url: "u".into(),
                asked: 1 << 20,
                got: 0
            })
        );
    }
}
