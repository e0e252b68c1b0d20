// The local engine's page: loads the chosen model into a worker (kept in IndexedDB, so later
// starts need no network) and offers it to the router in the background service worker. How it
// goes is sent to the background worker, which keeps it in chrome.storage for the popup (an
// offscreen document has no chrome.storage of its own).
import { WorkerEngine, offerLocalEngine } from './pkg/index.js';

const url = new URLSearchParams(location.search).get('model');
const report = (state) => chrome.runtime.sendMessage({ type: 'engine-state', engine: { url, ...state } });

let shown = '';
const progress = ({ phase, loaded, total }) => {
  const text = `${phase} ${total ? Math.floor((100 * loaded) / total) : 0}%`;
  if (text !== shown) report({ state: 'loading', progress: (shown = text) });
};

try {
  await report({ state: 'loading', progress: 'starting' });
  const engine = await WorkerEngine.load(url, { onProgress: progress });
  const verdict = await offerLocalEngine(engine);
  await report({ state: 'ready', id: engine.info.id, backend: engine.info.backend, verdict: verdict.verdict });
} catch (e) {
  await report({ state: 'failed', error: e.message, code: e.code ?? null });
}
