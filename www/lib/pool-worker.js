// One thread of the threaded build's pool (wasm.js): the module on the engine's shared memory,
// running the rayon thread it is handed until the engine's worker ends. `relaxed` says which of
// the two threaded builds the engine runs; the pool runs the same one.
self.onmessage = async ({ data: { module, memory, relaxed } }) => {
  try {
    const glue = await (relaxed ? import('./threads-relaxed/candlelight.js') : import('./threads/candlelight.js'));
    glue.initSync({ module, memory });
    self.postMessage('ready');
    glue.runPoolThread();
  } catch (e) {
    self.postMessage(`pool worker: ${e?.message ?? e}`);
  }
};
