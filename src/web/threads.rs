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
        .spawn_handler(|thread| {
            WAITING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(thread);
            HANDED.notify_one();
            Ok(())
        })
        .build_global()
        .map_err(|e| JsError::new(&format!("thread pool: {e}")))
}
