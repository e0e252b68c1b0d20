//! A load reads the model file front to back, whatever order the file keeps its tensors in
//! (llama.cpp's converter sorts each layer's by name and may put the embedding first; our
//! schema walks a layer as the forward pass does). A store that reads a chunk at a time, as
//! IndexedDB does in the browser (each chunk read and hashed as a whole), then reads each chunk
//! once: on the real SmolLM2-135M the schema's order went back to an earlier chunk 9 times.

use std::cell::RefCell;

use candlelight::block_on;
use candlelight::engine::cpu::CpuBackend;
use candlelight::engine::gpu::{GpuBackend, GpuOptions};
use candlelight::gguf::GgufFile;
use candlelight::store::{ChunkStore, FileStore, StoreError};

const PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/SmolLM2-135M-Instruct.Q4_1.gguf"
);

/// The file, with every read's offset written down.
struct Recording {
    file: FileStore,
    reads: RefCell<Vec<(u64, usize)>>,
}

impl ChunkStore for Recording {
    fn len(&self) -> u64 {
        self.file.len()
    }

    async fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        self.reads.borrow_mut().push((offset, buf.len()));
        self.file.read_at(offset, buf).await
    }
}

/// Where the reads after the header turn back to an earlier 16 MiB chunk (the browser's chunk
/// size): none, when the file is read in order.
fn backward_chunk_steps(reads: &[(u64, usize)], data_offset: u64) -> Vec<(u64, u64)> {
    const CHUNK: u64 = 16 << 20;
    let tensor_reads: Vec<u64> = reads
        .iter()
        .filter(|(o, _)| *o >= data_offset)
        .map(|(o, _)| *o)
        .collect();
    tensor_reads
        .windows(2)
        .filter(|w| w[1] / CHUNK < w[0] / CHUNK)
        .map(|w| (w[0], w[1]))
        .collect()
}

fn recording() -> Recording {
    Recording {
        file: FileStore::open(PATH)
            .unwrap_or_else(|e| panic!("{PATH}: {e}; run scripts/real_model.sh first")),
        reads: RefCell::new(Vec::new()),
    }
}

#[test]
fn the_cpu_backend_reads_smollm2_front_to_back() {
    let store = recording();
    let file = block_on(GgufFile::read(&store)).unwrap();
    store.reads.borrow_mut().clear();
    block_on(CpuBackend::load(&file, &store, &mut |_, _| {})).unwrap();
    let reads = store.reads.borrow();
    assert!(reads.len() > 100, "{} reads", reads.len());
    let offsets: Vec<u64> = reads.iter().map(|r| r.0).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "reads go back: {:?}",
        backward_chunk_steps(&reads, file.data_offset)
    );
}

#[test]
fn the_gpu_backend_reads_smollm2_front_to_back() {
    let store = recording();
    let file = block_on(GgufFile::read(&store)).unwrap();
    store.reads.borrow_mut().clear();
    let Ok(_gpu) = block_on(GpuBackend::load(
        &file,
        &store,
        GpuOptions::default(),
        &mut |_, _, _| {},
    )) else {
        panic!("no GPU adapter: run with WGPU_BACKEND=vulkan and Mesa's lavapipe installed");
    };
    let reads = store.reads.borrow();
    let back = backward_chunk_steps(&reads, file.data_offset);
    assert!(
        back.is_empty(),
        "reads go back to an earlier chunk: {back:?}"
    );
}
