// The wasm module, initialised once per thread. Four builds ship, one loaded per thread:
//   ./candlelight.js                 single thread, SIMD128: everywhere;
//   ./relaxed/candlelight.js         the same with relaxed SIMD's i8 dot product, where the
//                                    browser validates it (Chrome, Edge, Firefox);
//   ./threads/candlelight.js         shared memory and rayon over a pool of workers, in a
//                                    dedicated worker of a cross-origin isolated page (COOP/COEP
//                                    headers), the only place that may share memory and block;
//   ./threads-relaxed/candlelight.js both.
// Every build computes the same tokens (simd128.rs keeps the relaxed dot's sums identical).
// `glue` is whichever loaded: every module calls the wasm through it, never through an import
// of one build's bindings.
import init, * as single from './candlelight.js';

/** The loaded build's exports (the single-thread build's until `initWasm` picks another). */
export let glue = single;

let ready = null;

/** Loads the wasm module once. `wasm` overrides where the plain single-thread build comes from
 *  (a URL, Response or Module) for bundlers that move it, and then that build is used. Options:
 *  `threads` (how many; default `navigator.hardwareConcurrency` capped at 8; 1 forces a
 *  single-thread build), `relaxedSimd` (false forces a plain SIMD128 build; default: where the
 *  browser has it) and `maxMemoryBytes` (the threaded build's memory ceiling, fixed when it
 *  starts; default half the device's memory as `navigator.deviceMemory` reports it, between 1
 *  and 4 GiB). */
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

// The smallest module using i32x4.relaxed_dot_i8x16_i7x16_add_s: () -> v128 on three
// i8x16.splat(0).
const RELAXED_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
  0x03, 0x02, 0x01, 0x00, // one function of type 0
  0x0a, 0x13, 0x01, 0x11, 0x00, // code: one body of 17 bytes, no locals
  0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, 0x41, 0x00, 0xfd, 0x0f, // 3 × i8x16.splat(0)
  0xfd, 0x93, 0x02, 0x0b, // i32x4.relaxed_dot_i8x16_i7x16_add_s, end
]);

/** Whether this browser compiles relaxed SIMD's i8 dot product. */
export function hasRelaxedSimd() {
  try {
    return WebAssembly.validate(RELAXED_PROBE);
  } catch {
    return false;
  }
}

// A service worker may not import() (the relaxed builds load that way): it runs the plain build,
// its engine is on the GPU anyway.
const canImport = typeof ServiceWorkerGlobalScope === 'undefined' || !(globalThis instanceof ServiceWorkerGlobalScope);

async function start(wasm, { threads, relaxedSimd, maxMemoryBytes } = {}) {
  const relaxed = !wasm && relaxedSimd !== false && canImport && hasRelaxedSimd();
  const n = threadsFor(threads);
  if (n > 1) {
    try {
      glue = await startThreaded(n, relaxed, maxMemoryBytes);
      return glue;
    } catch (e) {
      // A browser that refuses shared memory or nested workers still gets a single build.
      console.warn(`candlelight: threaded build unavailable (${e?.message ?? e}); using one thread`);
      glue = single;
    }
  }
  if (relaxed) {
    try {
      const module = await import('./relaxed/candlelight.js');
      await twice(() => module.default());
      glue = module;
      return glue;
    } catch (e) {
      console.warn(`candlelight: relaxed SIMD build unavailable (${e?.message ?? e}); using SIMD128`);
    }
  }
  await twice(() => init(wasm ? { module_or_path: wasm } : undefined));
  glue = single;
  return glue;
}

// A second try after a failed fetch or compile: a response body can be cut while the browser's
// HTTP cache entry it streams from is replaced (another tab, or the app's service worker
// refreshing its copy), and the next read of the same file then succeeds.
async function twice(start) {
  try {
    return await start();
  } catch {
    return start();
  }
}

const PAGE = 65536;

async function startThreaded(n, relaxed, maxMemoryBytes) {
  // Literal paths, so bundlers see both builds.
  const threaded = await (relaxed ? import('./threads-relaxed/candlelight.js') : import('./threads/candlelight.js'));
  const url = relaxed
    ? new URL('./threads-relaxed/candlelight_bg.wasm', import.meta.url)
    : new URL('./threads/candlelight_bg.wasm', import.meta.url);
  const gib = 1 << 30;
  const deviceBytes = (globalThis.navigator?.deviceMemory ?? 4) * gib;
  const ceiling = Math.min(4 * gib, Math.max(gib, Number(maxMemoryBytes) || deviceBytes / 2));
  const memory = new WebAssembly.Memory({ initial: 32, maximum: Math.floor(ceiling / PAGE), shared: true });
  const module = await twice(() => WebAssembly.compileStreaming(fetch(url)));
  await threaded.default({ module_or_path: module, memory });
  // Each pool worker instantiates the same module on the same memory, says so, then waits in
  // runPoolThread for the rayon thread buildPool hands it.
  const started = Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const w = new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: 'candlelight-pool' });
    w.onmessage = ({ data }) => (data === 'ready' ? resolve(w) : reject(new Error(String(data))));
    w.onerror = (e) => reject(new Error(e.message || 'pool worker failed to start'));
    w.postMessage({ module, memory, relaxed });
  }));
  await Promise.all(started);
  threaded.buildPool(n);
  return threaded;
}
