// Is this device fast enough for a model? The probe (browser facts and our own CPU and GPU
// matvec bandwidth, measured in Rust) and the verdict, for the router's too-weak decision.
import { toError } from './errors.js';
import { glue, initWasm } from './wasm.js';

/** Measures this device for the router: WebGPU adapter and limits, memory, cores, storage, and
 *  our CPU and GPU matvec bandwidth. Cached per adapter; `fresh: true` measures again. */
export async function probeDevice({ fresh = false } = {}) {
  await initWasm();
  const gpu = await navigator.gpu?.requestAdapter?.();
  const key = `candlelight-device-profile:${gpu ? 'webgpu' : 'none'}:${navigator.hardwareConcurrency}`;
  const saved = !fresh && globalThis.localStorage?.getItem(key);
  if (saved) return JSON.parse(saved);
  const profile = await glue.probeDevice().catch((e) => { throw toError(e); });
  globalThis.localStorage?.setItem(key, JSON.stringify(profile));
  return profile;
}

/** Whether `profile` can run a model (`{ fileBytes, bytesPerToken, stored }`) at `minTokensPerS`. */
export async function assessDevice(profile, model, minTokensPerS) {
  await initWasm();
  try {
    return glue.assessDevice(profile, model, minTokensPerS);
  } catch (e) {
    throw toError(e);
  }
}
