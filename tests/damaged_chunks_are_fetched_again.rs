//! A model chunk that fails its check while the model loads (damaged on disk, or evicted by the
//! browser) is fetched again and the load retried; one that keeps failing ends in a typed error
//! after three rounds, and other errors end the load at once. The source here stands in for
//! IndexedDB and the network as the browser's does: a damaged chunk fails its hash check on
//! read (`CorruptChunk`), an evicted one is absent (`MissingChunk`), and `forget` drops it so the
//! next `open` downloads it whole again. (The browser's own run of this is in
//! tests/web_engine.rs.)

use std::cell::RefCell;
use std::collections::BTreeMap;

use candlelight::block_on;
use candlelight::engine::{load_healing, BackendChoice, ChunkSource, EngineError, LoadOptions};
use candlelight::gguf::{Architecture, GgufError};
use candlelight::store::{ChunkStore, StoreError};
use candlelight_fixtures::{build, FixtureSpec, Quant};

const CHUNK: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Damaged,
    Evicted,
}

/// The model file as stored: its bytes, the chunks that are bad now, and what the next
/// download of each bad chunk will bring (a good copy, unless `stays_bad`).
struct Source {
    bytes: Vec<u8>,
    bad: RefCell<BTreeMap<u64, Fault>>,
    stays_bad: Option<u64>,
    opens: RefCell<usize>,
    forgotten: RefCell<Vec<u64>>,
}

struct Stored {
    bytes: Vec<u8>,
    bad: BTreeMap<u64, Fault>,
}

impl ChunkStore for Stored {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let end = offset + buf.len() as u64;
        if end > self.len() {
            return Err(StoreError::OutOfRange {
                offset,
                len: buf.len() as u64,
                file_len: self.len(),
            });
        }
        for index in offset / CHUNK..end.div_ceil(CHUNK) {
            match self.bad.get(&index) {
                Some(Fault::Damaged) => return Err(StoreError::CorruptChunk { index }),
                Some(Fault::Evicted) => return Err(StoreError::MissingChunk { index }),
                None => {}
            }
        }
        buf.copy_from_slice(&self.bytes[offset as usize..end as usize]);
        Ok(())
    }
}

impl ChunkSource for Source {
    type Store = Stored;
    type Error = EngineError;

    async fn open(&self) -> Result<Stored, EngineError> {
        *self.opens.borrow_mut() += 1;
        Ok(Stored {
            bytes: self.bytes.clone(),
            bad: self.bad.borrow().clone(),
        })
    }

    async fn forget(&self, index: u64) -> Result<(), EngineError> {
        self.forgotten.borrow_mut().push(index);
        if self.stays_bad != Some(index) {
            self.bad.borrow_mut().remove(&index);
        }
        Ok(())
    }
}

fn source(bad: &[(u64, Fault)], stays_bad: Option<u64>) -> Source {
    Source {
        bytes: build(&FixtureSpec::tiny(Architecture::Qwen3, Quant::Q8_0)).to_bytes(),
        bad: RefCell::new(bad.iter().copied().collect()),
        stays_bad,
        opens: RefCell::new(0),
        forgotten: RefCell::new(Vec::new()),
    }
}

fn load(s: &Source) -> Result<(), EngineError> {
    let options = LoadOptions {
        backend: BackendChoice::Cpu,
        ..LoadOptions::default()
    };
    block_on(load_healing(s, options, &mut |_| Ok(()), &mut |_, _, _| {})).map(|_| ())
}

#[test]
fn a_damaged_chunk_in_the_header_or_the_weights_is_fetched_again() {
    // Chunk 0 holds the header; chunk 40 lies among the weights.
    for index in [0, 40] {
        let s = source(&[(index, Fault::Damaged)], None);
        assert!(
            s.bytes.len() as u64 > 41 * CHUNK,
            "the fixture spans chunk 40"
        );
        load(&s).unwrap();
        assert_eq!(*s.forgotten.borrow(), vec![index]);
        assert_eq!(*s.opens.borrow(), 2, "one more download round");
    }
}

#[test]
fn an_evicted_chunk_and_a_damaged_one_are_both_healed() {
    let s = source(&[(3, Fault::Evicted), (60, Fault::Damaged)], None);
    load(&s).unwrap();
    assert_eq!(*s.forgotten.borrow(), vec![3, 60]);
    assert_eq!(*s.opens.borrow(), 3);
}

#[test]
fn a_chunk_that_keeps_failing_ends_the_load_after_three_rounds() {
    let s = source(&[(7, Fault::Damaged)], Some(7));
    match load(&s) {
        Err(EngineError::ChunkKeepsFailing { index: 7 }) => {}
        other => panic!("expected ChunkKeepsFailing for chunk 7, got {other:?}"),
    }
    assert_eq!(*s.opens.borrow(), 3);
    assert_eq!(*s.forgotten.borrow(), vec![7, 7, 7]);
}

#[test]
fn a_file_that_is_not_a_model_fails_at_once() {
    let mut s = source(&[], None);
    s.bytes[0..4].copy_from_slice(b"GGUX");
    match load(&s) {
        Err(EngineError::Gguf(GgufError::BadMagic { .. })) => {}
        other => panic!("expected BadMagic, got {other:?}"),
    }
    assert_eq!(*s.opens.borrow(), 1);
    assert!(s.forgotten.borrow().is_empty());
}
