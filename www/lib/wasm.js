// The wasm module, initialised once per thread. Two builds ship: the single-thread one
// (./candlelight.js) everywhere, and the threaded one (./threads/candlelight.js: shared memory,
// rayon over a pool of workers) in a dedicated worker of a cross-origin isolated page (COOP/COEP
// headers), the only place that may share memory and block on it. `glue` is whichever loaded.
import init, * as single from './candlelight.js';

/** The loaded build's exports (the single-thread build's until `initWasm` picks the other). */
export let glue = single;

let ready = null;

/** Loads the wasm module once. `wasm` overrides where the single-thread build comes from (a URL,
 *  Response or Module) for bundlers that move it. Options: `threads` (how many; default
 *  `navigator.hardwareConcurrency` capped at 8; 1 forces the single-thread build) and
 *  `maxMemoryBytes` (the threaded build's memory ceiling, fixed when it starts; default half the
 *  device's memory as `navigator.deviceMemory` reports it, between 1 and 4 GiB). */
export function initWasm(wasm, options = {}) {
  ready ??= start(wasm, options);
  return ready;
}

/** Threads the threaded build would run here: 1 where it cannot run. */
export function threadsFor(requested) {
  const isolated = globalThis.crossOriginIsolated === true;
  const worker = typeof DedicatedWorkerGlobalScope !== 'undefined' && globalThis instanceof DedicatedWorkerGlobalScope;
  if (!isolated || !worker || typeof Worker === 'undefined') return 1;
  const cores = globalThis.navigator?.hardwareConcurrency || 1;
  const n = Math.floor(Number(requested ?? Math.min(cores, 8)));
  return Number.isFinite(n) && n > 1 ? Math.min(n, 64) : 1;
}

async function start(wasm, { threads, maxMemoryBytes } = {}) {
  const n = threadsFor(threads);
  if (n > 1) {
    try {
      glue = await startThreaded(n, maxMemoryBytes);
      return glue;
    } catch (e) {
      // A browser that refuses shared memory or nested workers still gets the single build.
      console.warn(`candlelight: threaded build unavailable (${e?.message ?? e}); using one thread`);
      glue = single;
    }
  }
  await init(wasm ? { module_or_path: wasm } : undefined);
  return glue;
}

const PAGE = 65536;

async function startThreaded(n, maxMemoryBytes) {
  const threaded = await import('./threads/candlelight.js');
  const gib = 1 << 30;
  const deviceBytes = (globalThis.navigator?.deviceMemory ?? 4) * gib;
  const ceiling = Math.min(4 * gib, Math.max(gib, Number(maxMemoryBytes) || deviceBytes / 2));
  const memory = new WebAssembly.Memory({ initial: 32, maximum: Math.floor(ceiling / PAGE), shared: true });
  const url = new URL('./threads/candlelight_bg.wasm', import.meta.url);
  const module = await WebAssembly.compileStreaming(fetch(url));
  await threaded.default({ module_or_path: module, memory });
  // Each pool worker instantiates the same module on the same memory, says so, then waits in
  // runPoolThread for the rayon thread buildPool hands it.
  const started = Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const w = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: 'candlelight-pool' });
    w.onmessage = ({ data }) => (data === 'ready' ? resolve(w) : reject(new Error(String(data))));
    w.onerror = (e) => reject(new Error(e.message || 'pool worker failed to start'));
    w.postMessage({ module, memory });
  }));
  await Promise.all(started);
  threaded.buildPool(n);
  return threaded;
}
