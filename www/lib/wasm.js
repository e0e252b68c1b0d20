// The wasm module, initialised once per thread; `wasm` overrides where it comes from (a URL,
// Response or Module) for bundlers that move it.
import init from './candlelight.js';

let ready = null;

/** Loads the wasm module once. `wasm` overrides where it comes from (a URL, Response or Module). */
export function initWasm(wasm) {
  ready ??= init(wasm ? { module_or_path: wasm } : undefined);
  return ready;
}
