// The extension's service worker: candlelight's router (the package's service-worker.js) serves
// /v1/chat/completions to the popup, and this file keeps the offscreen document where the local
// engine runs (a service worker cannot host the CPU engine without blocking every request).
import { installRouter } from './pkg/service-worker.js';

installRouter();
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

const ENGINE_PAGE = 'offscreen.html';

async function openEngine(url) {
  if (await chrome.offscreen.hasDocument()) await chrome.offscreen.closeDocument();
  if (!url) return;
  await chrome.offscreen.createDocument({
    url: `${ENGINE_PAGE}?model=${encodeURIComponent(url)}`,
    reasons: ['WORKERS'],
    justification: 'Runs the language model in a worker, on the GPU or the CPU.',
  });
}

// The model the user chose is kept, and its engine reopened when the browser starts.
chrome.runtime.onStartup.addListener(async () => openEngine((await chrome.storage.local.get('model')).model));

chrome.runtime.onMessage.addListener((message, _sender, reply) => {
  if (message?.type === 'engine-state') {
    chrome.storage.local.set({ engine: message.engine }).then(() => reply({ ok: true }));
    return true;
  }
  if (message?.type !== 'use-model') return false;
  chrome.storage.local.set({ model: message.url, engine: null })
    .then(() => openEngine(message.url))
    .then(() => reply({ ok: true }), (e) => reply({ error: String(e?.message ?? e) }));
  return true;
});
