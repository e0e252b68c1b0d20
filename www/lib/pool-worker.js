// One thread of the threaded build's pool (wasm.js): the module on the engine's shared memory,
// running the rayon thread it is handed until the engine's worker ends.
import { initSync, runPoolThread } from './threads/candlelight.js';

self.onmessage = ({ data: { module, memory } }) => {
  try {
    initSync({ module, memory });
  } catch (e) {
    self.postMessage(`pool worker: ${e?.message ?? e}`);
    return;
  }
  self.postMessage('ready');
  runPoolThread();
};
