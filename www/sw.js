// The demo's service worker: candlelight's router serves /v1/chat/completions, /v1/models and
// /v1/metrics for this origin (the package's service-worker.js), and this file keeps the app
// shell so the demo opens offline.
import { installRouter } from '/pkg/service-worker.js';

installRouter();

const SHELL = 'candlelight-shell';
const SHELL_FILES = [
  './', 'index.html', 'app.js', 'style.css', 'manifest.webmanifest', 'offline.html',
  'icons/icon-192.png', 'icons/icon-512.png', 'icons/maskable-192.png', 'icons/maskable-512.png',
  '/pkg/index.js', '/pkg/client.js', '/pkg/worker.js', '/pkg/local-route.js', '/pkg/service-worker.js', '/pkg/candlelight.js', '/pkg/candlelight_bg.wasm',
];

async function keepShell() {
  const cache = await caches.open(SHELL);
  // One missing file must not stop the rest from being kept.
  await Promise.all(SHELL_FILES.map((f) => cache.add(new Request(f, { cache: 'reload' })).catch(() => {})));
  // wasm-bindgen's JS snippets sit under a hashed folder that only candlelight.js names.
  const glue = await cache.match('/pkg/candlelight.js');
  const snippets = glue ? [...(await glue.text()).matchAll(/from '\.\/(snippets\/[^']+)'/g)].map((m) => `/pkg/${m[1]}`) : [];
  await Promise.all(snippets.map((f) => cache.add(new Request(f, { cache: 'reload' })).catch(() => {})));
}

// The shell from the network when it answers (so updates show at once), else from the cache;
// a page neither has gets the offline page.
const SHELL_PATHS = new Set(SHELL_FILES.map((f) => new URL(f, self.registration.scope).pathname));

async function shell(request) {
  const cache = await caches.open(SHELL);
  try {
    const fresh = await fetch(request);
    const path = new URL(request.url).pathname;
    if (fresh.ok && (SHELL_PATHS.has(path) || path.startsWith('/pkg/snippets/'))) cache.put(request, fresh.clone());
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
    e.respondWith(shell(e.request));
  }
});
