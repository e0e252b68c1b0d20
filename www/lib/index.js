// candlelight's public JavaScript API: `Engine` runs the model in this thread (a worker, an
// extension page); `WorkerEngine` has the same API and runs it in a dedicated worker, so a page's
// UI never blocks. Both speak the OpenAI / DeepSeek chat-completions shapes. This file only
// re-exports; each module has one job (see README.md).
export { initWasm } from './wasm.js';
export { CandlelightError } from './errors.js';
export { Engine } from './engine.js';
export { WorkerEngine } from './worker-engine.js';
export { probeDevice, assessDevice } from './device.js';
export { Conversations } from './conversations.js';
export {
  chatThroughRouter, configureRouter, engineResponse, hostEngineInServiceWorker, offerLocalEngine,
  unofferLocalEngine,
} from './router-client.js';
