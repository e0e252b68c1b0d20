// The demo's service worker: candlelight's router serves /v1/chat/completions, /v1/models and
// /v1/metrics for this origin (the package's service-worker.js), and this file keeps the app
// shell so the demo opens offline. Its pages and workers get COOP/COEP from here, so the demo is
// cross-origin isolated (threads) on a static host that sends no headers, from the second visit.
import { decidesIsolation, installRouter, withCrossOriginIsolation } from '/pkg/service-worker.js';

installRouter();

const SHELL = 'candlelight-shell';
const SHELL_FILES = [
  './', 'index.html', 'app.js', 'catalog.json', 'style.css', 'manifest.webmanifest', 'offline.html',
  'icons/icon-192.png', 'icons/icon-512.png', 'icons/maskable-192.png', 'icons/maskable-512.png',
];

async function keepShell() {
  const cache = await caches.open(SHELL);
  const keep = (files) => Promise.all(files.map((f) => cache.add(new Request(f, { cache: 'reload' })).catch(() => {})));
  // One missing file must not stop the rest from being kept.
  await keep(SHELL_FILES);
  // The package's modules and wasm, as its package.json lists them, and each build's bindings
  // and wasm (its folders: relaxed/, threads/, threads-relaxed/).
  const manifest = await fetch('/pkg/package.json', { cache: 'reload' }).then((r) => r.json()).catch(() => ({ files: [] }));
  await keep(manifest.files.filter((f) => /\.(js|wasm)$/.test(f)).map((f) => `/pkg/${f}`));
  const builds = ['/pkg/', ...manifest.files.filter((f) => f.endsWith('/') && f !== 'snippets/').map((f) => `/pkg/${f}`)];
  await keep(builds.flatMap((b) => [`${b}candlelight.js`, `${b}candlelight_bg.wasm`]));
  // wasm-bindgen's JS snippets sit under a hashed folder that only each build's bindings name.
  for (const b of builds) {
    const glue = await cache.match(`${b}candlelight.js`);
    const snippets = glue ? [...(await glue.text()).matchAll(/from '\.\/(snippets\/[^']+)'/g)].map((m) => `${b}${m[1]}`) : [];
    await keep(snippets);
  }
}

// The shell from the network when it answers (so updates show at once), else from the cache;
// a page neither has gets the offline page.
const SHELL_PATHS = new Set(SHELL_FILES.map((f) => new URL(f, self.registration.scope).pathname));
const isShell = (path) => SHELL_PATHS.has(path) || path.startsWith('/pkg/');

async function shell(request) {
  const cache = await caches.open(SHELL);
  try {
    const fresh = await fetch(request);
    const path = new URL(request.url).pathname;
    if (fresh.ok && isShell(path)) cache.put(request, fresh.clone());
    return fresh;
  } catch {
    const kept = await cache.match(request, { ignoreSearch: true });
    if (kept) return kept;
    if (request.mode === 'navigate') return (await cache.match('offline.html')) ?? Response.error();
    return Response.error();
  }
}

self.addEventListener('install', (e) => {
  self.skipWaiting();
  e.waitUntil(keepShell());
});
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/')) return;
  if (e.request.method === 'GET' && !url.pathname.startsWith('/models/') && !url.pathname.startsWith('/__')) {
    const answer = shell(e.request);
    e.respondWith(decidesIsolation(e.request) ? answer.then((r) => withCrossOriginIsolation(r)) : answer);
  }
});
