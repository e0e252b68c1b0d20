//! The thread pool of the threaded wasm build: rayon's threads run in web workers that share this
//! module's memory. wasm.js starts the workers (each instantiates the module on the shared memory
//! and calls `runPoolThread`, where it waits for its rayon thread), then calls `buildPool`, which
//! hands each waiting worker a thread. Only a dedicated worker may build the pool: the threads
//! and the step's wait for them block with `Atomics.wait`, which a page's main thread may not.

use std::sync::{Condvar, Mutex};

use wasm_bindgen::prelude::*;

/// Rayon threads handed out by `buildPool`, waiting for a worker to run them.
static WAITING: Mutex<Vec<rayon::ThreadBuilder>> = Mutex::new(Vec::new());
static HANDED: Condvar = Condvar::new();

/// Runs in a pool worker: waits for a rayon thread and runs it (for good).
#[wasm_bindgen(js_name = runPoolThread)]
pub fn run_pool_thread() {
    let thread = {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = waiting.pop() {
                break t;
            }
            waiting = HANDED.wait(waiting).unwrap_or_else(|e| e.into_inner());
        }
    };
    thread.run();
}

/// Builds rayon's global pool of `threads` threads, once the workers that will run them wait in
/// `runPoolThread`.
#[wasm_bindgen(js_name = buildPool)]
pub fn build_pool(threads: usize) -> Result<(), JsError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(hand_out)
        .build_global()
        .map_err(|e| JsError::new(&format!("thread pool: {e}")))
}

/// Leaves a rayon thread for the next worker waiting in `runPoolThread`.
fn hand_out(thread: rayon::ThreadBuilder) -> std::io::Result<()> {
    WAITING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(thread);
    HANDED.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    use crate::engine::cpu::{crew, probe_matmul};
    use crate::gguf::TensorType;
    use crate::rng::SeededRng;

    #[wasm_bindgen(inline_js = r#"
// Pool workers as wasm.js starts them, on the test runner's own bindings (served at
// /wasm-bindgen-test) and this module's shared memory.
export function start_pool_workers(module, memory, n) {
  const glue = new URL('/wasm-bindgen-test', location.href).href;
  const source = `import { initSync, runPoolThread } from ${JSON.stringify(glue)};
self.onmessage = ({ data: { module, memory } }) => {
  initSync({ module, memory });
  self.postMessage('ready');
  runPoolThread();
};`;
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const w = new Worker(url, { type: 'module' });
    w.onmessage = ({ data }) => (data === 'ready' ? resolve() : reject(new Error(String(data))));
    w.onerror = (e) => reject(new Error(e.message || 'pool worker failed to start'));
    w.postMessage({ module, memory });
  })));
}
"#)]
    extern "C" {
        fn start_pool_workers(module: JsValue, memory: JsValue, n: usize) -> js_sys::Promise;
    }

    /// In the threaded build, on a pool of two web workers started as wasm.js starts them, the
    /// matrix products split their columns across both threads, split by rayon and on a step's
    /// crew (whose helper takes tasks), and give the single thread's floats bit for bit, for
    /// every tiled format, decode and prefill shapes.
    #[wasm_bindgen_test]
    async fn products_on_two_pool_threads_equal_one_threads() {
        let started = start_pool_workers(wasm_bindgen::module(), wasm_bindgen::memory(), 2);
        wasm_bindgen_futures::JsFuture::from(started)
            .await
            .expect("pool workers");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .spawn_handler(super::hand_out)
            .build()
            .expect("pool");
        // Both threads run (a broadcast waits for each), each in its own worker.
        assert_eq!(pool.broadcast(|cx| cx.index()), vec![0, 1]);
        // 512 × 896: a decode product of 458 752 multiply-adds stays on one thread, so 4 and 7
        // activation rows (past PARALLEL_MACS) are the ones split.
        let (n_in, n_out) = (896usize, 512usize);
        let mut rng = SeededRng::new(5);
        for ty in [
            TensorType::Q4_0,
            TensorType::Q4_1,
            TensorType::Q5_0,
            TensorType::Q8_0,
        ] {
            let w: Vec<f32> = (0..n_in * n_out)
                .map(|_| rng.next_normal() * 0.05)
                .collect();
            let t =
                candle_core::Tensor::from_vec(w, (n_out, n_in), &candle_core::Device::Cpu).unwrap();
            let q = candle_core::quantized::QTensor::quantize(&t, ty.dtype.unwrap()).unwrap();
            let mm = probe_matmul(ty, &q.data().unwrap(), n_in, n_out).unwrap();
            for m in [1usize, 4, 7] {
                let x: Vec<f32> = (0..m * n_in).map(|_| rng.next_normal()).collect();
                let one = mm(&x, m).unwrap();
                let two = pool.install(|| mm(&x, m)).unwrap();
                // As a forward step runs them: on a crew, the pool's threads spinning between
                // products; twenty in one step, as long as the helper may take to wake.
                let crewed: Vec<Vec<f32>> =
                    pool.install(|| crew::step(|| (0..20).map(|_| mm(&x, m).unwrap()).collect()));
                for (how, got) in [("split", &two)]
                    .into_iter()
                    .chain(crewed.iter().map(|c| ("on a crew", c)))
                {
                    let differ = one
                        .iter()
                        .zip(got)
                        .position(|(a, b)| a.to_bits() != b.to_bits());
                    assert_eq!(differ, None, "{} m={m} {how}: first difference", ty.name);
                    assert_eq!(one.len(), got.len());
                }
            }
        }
        assert!(
            crew::HELPED.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "the crew's helper took no task"
        );
    }
}
