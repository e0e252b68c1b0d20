//! The browser holds a model's header whole while it parses it, so the header has a budget
//! (`MAX_HEADER_BYTES`): counts that fit a 30 GB file but not the budget are refused before a
//! byte of them is fetched; counts never size an allocation on their own; and a long header is
//! fetched once, each chunk once, not re-parsed for every chunk it spans.

mod common;

use std::cell::RefCell;

use candlelight::block_on;
use candlelight::gguf::{GgufError, GgufFile, MAX_HEADER_BYTES};
use candlelight::store::{ChunkStore, StoreError};
use common::alloc_watch::{watched, Watch};

#[global_allocator]
static ALLOC: Watch = Watch;

/// A file of `len` bytes that holds `head` and then `fill` bytes, made up as they are read, with
/// every read recorded: a many-GB model file without the memory.
struct SparseFile {
    head: Vec<u8>,
    fill: u8,
    len: u64,
    reads: RefCell<Vec<(u64, usize)>>,
}

impl ChunkStore for SparseFile {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.reads.borrow_mut().push((offset, buf.len()));
        for (i, b) in buf.iter_mut().enumerate() {
            let at = offset as usize + i;
            *b = self.head.get(at).copied().unwrap_or(self.fill);
        }
        Ok(())
    }
}

/// `GGUF` v3 with `tensors` tensors and one metadata key `big`, a string of `len` bytes.
fn header(tensors: u64, len: u64) -> Vec<u8> {
    let mut h = b"GGUF".to_vec();
    h.extend(3u32.to_le_bytes());
    h.extend(tensors.to_le_bytes());
    h.extend(1u64.to_le_bytes());
    h.extend(3u64.to_le_bytes());
    h.extend(b"big");
    h.extend(8u32.to_le_bytes());
    h.extend(len.to_le_bytes());
    h
}

fn parse(file: &SparseFile) -> (Result<GgufFile, GgufError>, usize, usize) {
    watched(|| block_on(GgufFile::read(file)))
}

#[test]
fn a_string_past_the_budget_is_refused_before_it_is_fetched() {
    // 300 MiB of string in a 2 GiB file: it fits the file, not the budget.
    let head = header(0, 300 << 20);
    let file = SparseFile {
        len: 2 << 30,
        fill: b'a',
        head,
        reads: RefCell::default(),
    };
    let (r, largest, _) = parse(&file);
    assert!(
        matches!(r, Err(GgufError::HeaderTooLarge { what: "string value", budget, .. }) if budget == MAX_HEADER_BYTES),
        "{r:?}"
    );
    let fetched: usize = file.reads.borrow().iter().map(|r| r.1).sum();
    assert!(fetched <= 4 << 20, "fetched {fetched} bytes");
    assert!(largest <= 4 << 20, "largest allocation {largest} bytes");
}

#[test]
fn a_long_header_is_fetched_once_and_parsed_twice() {
    // A 100 MiB string: within the budget, 25 of the 4 MiB pieces the header is fetched in.
    let len = 100u64 << 20;
    let head = header(0, len);
    let file = SparseFile {
        len: head.len() as u64 + len,
        fill: b'a',
        head,
        reads: RefCell::default(),
    };
    let (r, _, huge) = parse(&file);
    let parsed = r.expect("parses");
    assert_eq!(
        parsed.get("big").unwrap().as_str().unwrap().len() as u64,
        len
    );
    let reads = file.reads.borrow();
    let mut offsets: Vec<u64> = reads.iter().map(|r| r.0).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), reads.len(), "a range was fetched twice");
    let fetched: u64 = reads.iter().map(|r| r.1 as u64).sum();
    assert_eq!(fetched, file.len);
    // One failed pass learns the whole range, the next parses it: the string's buffer is
    // allocated twice, not once per piece (26 times).
    assert!(huge <= 3, "{huge} allocations of 64 MiB or more");
}

#[test]
fn counts_reserve_no_more_than_what_is_read() {
    // A million tensors claimed in a 64 MiB file of zeros: the first entry is already bad.
    let mut head = header(1_000_000, 1);
    head.push(b'x');
    let file = SparseFile {
        len: 64 << 20,
        fill: 0,
        head,
        reads: RefCell::default(),
    };
    let (r, largest, _) = parse(&file);
    assert!(matches!(r, Err(GgufError::BadDimensions { .. })), "{r:?}");
    // The 4 MiB piece the header is fetched in is the largest; a directory sized by the count
    // would take ~100 MB.
    assert!(largest <= 4 << 20, "largest allocation {largest} bytes");
}
