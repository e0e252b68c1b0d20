// candlelight's router inside a service worker: `/v1/chat/completions`, `/v1/models` and
// `/v1/metrics` for the worker's own origin, answered by the router (Rust, in wasm), which also
// does the fetching. Glue only: this file wires requests, the saved configuration and the local
// engine (a page's, offered with offerLocalEngine, or one in this worker where it has WebGPU,
// asked for with hostEngineInServiceWorker, answering inside the wasm module).
import { CandlelightError } from './errors.js';
import { Msg, receiveResponse, serve } from './protocol.js';
import { loadConfig, saveConfig } from './sealed-config.js';
import { glue, initWasm } from './wasm.js';

// The Cache API takes http(s) keys only, and an extension's origin is chrome-extension://: what
// this worker remembers lives under a reserved name (.invalid never resolves). The router's
// configuration, keys included, is sealed in IndexedDB instead (sealed-config.js); CONFIG is
// where older versions kept it in clear text, read once and removed.
const CONFIG = 'https://candlelight.invalid/router-config';
const HOSTED = 'https://candlelight.invalid/hosted-engine';
const OFFERED = 'https://candlelight.invalid/page-engine-offered';
const saved = () => caches.open('candlelight-router');
let core = null;
// The configuration `core` runs, keys included: what a new configuration's `keepKeys` keeps.
let current = null;
let local = { ready: false, capable: false, client: null, model: null };

// An engine in this worker, where it has WebGPU (a CPU engine here would block every request):
// { url, capable, engine: Promise<EngineCore>, loaded: EngineCore once it is }. Its URL is
// saved, so a restarted worker loads it again.
let hosted = null;

/** A new router for `config`, told what the local route can do. */
function routerFor(config) {
  const next = new glue.RouterCore(config); // throws on a bad configuration
  next.setLocal(local.ready, local.capable);
  if (hosted?.loaded) next.hostEngine(hosted.loaded);
  return next;
}

async function router() {
  await initWasm();
  if (!core) {
    let config = await loadConfig();
    const cache = await saved();
    const clear = await cache.match(CONFIG);
    if (clear) {
      config ??= await clear.json();
      await saveConfig(config);
      await cache.delete(CONFIG);
    }
    current = config ?? { mode: 'auto', providers: [] };
    core = routerFor(current);
  }
  return core;
}

/** `config` with the keys of any provider marked `keepKeys` taken from the configuration in
 *  use: a settings page shows no key it cannot read, and saving it keeps the key. */
function withKeptKeys(config) {
  const providers = (config.providers ?? []).map(({ keepKeys, ...p }) => {
    if (!keepKeys) return p;
    const before = current?.providers?.find((q) => q.name === p.name);
    return { ...p, keys: before?.keys ?? [] };
  });
  return { ...config, providers };
}

async function configure(asked) {
  await initWasm();
  await router();
  const config = withKeptKeys(asked);
  const next = routerFor(config); // keeps the old one when this throws
  await saveConfig(config);
  current = config;
  core = next;
  // A new configuration starts with fresh provider health: the pages hear it.
  await announceHealth(core);
  // What a settings page may know: how many keys each provider holds, never the keys.
  return { providers: config.providers.map((p) => ({ name: p.name, keys: p.keys?.length ?? 0 })) };
}

async function host(url, capable) {
  await initWasm();
  const adapter = await self.navigator.gpu?.requestAdapter?.().catch(() => null);
  if (!adapter) throw new CandlelightError('backend_unavailable', 'this service worker has no WebGPU: offer a page\'s engine instead');
  if (hosted?.url !== url) {
    const engine = glue.EngineCore.load(url, { backend: 'gpu' });
    const entry = { url, capable, engine, loaded: null };
    hosted = entry;
    engine.then((e) => { entry.loaded = e; }, () => { if (hosted === entry) hosted = null; });
  }
  const engine = await hosted.engine;
  await (await saved()).put(HOSTED, new Response(JSON.stringify({ url, capable })));
  const info = engine.info();
  if (!local.client) local = { ready: true, capable, client: null, model: info.id };
  const r = await router();
  r.hostEngine(engine);
  r.setLocal(local.ready, local.capable);
  return { id: info.id, backend: info.backend };
}

// A service worker stopped while idle forgets which page offered its engine. The first request
// after a start asks the pages once, and waits briefly for an offer; failing that, it loads the
// engine it hosted before.
let asked = null;
let offered = () => {};
function findLocal() {
  if (local.ready) return Promise.resolve();
  asked ??= (async () => {
    const kept = await saved();
    const pages = await self.clients.matchAll();
    // Only an origin whose pages have offered an engine before waits for one.
    if (pages.length && (await kept.match(OFFERED))) {
      const wait = new Promise((resolve) => { offered = resolve; setTimeout(resolve, 500); });
      for (const client of pages) client.postMessage({ type: Msg.engineWanted });
      await wait;
    }
    const hostedBefore = !local.ready && (await kept.match(HOSTED));
    if (hostedBefore) {
      const { url, capable } = await hostedBefore.json();
      await host(url, capable).catch(() => {});
    }
  })();
  return asked;
}

async function offer(m, source) {
  // A page withdrawing its engine clears the route only if it is the page that holds it.
  if (!m.ready && local.client && local.client !== source?.id) return;
  local = m.ready
    ? { ready: true, capable: m.capable, client: source?.id ?? null, model: m.model ?? null }
    : { ready: !!hosted?.loaded, capable: !!hosted?.capable, client: null, model: hosted?.loaded?.info().id ?? null };
  (await router()).setLocal(local.ready, local.capable);
  offered();
  await (await saved()).put(OFFERED, new Response('1'));
}

/** Whether `source` may change the router: a top-level page (not a frame, not a worker)
 *  inside this worker's scope. A frame of the origin may show anyone's content, and a page
 *  outside the scope belongs to another app on the same host; neither may swap the providers
 *  (and with them receive every prompt) or claim the local route (and receive other tabs'). */
function mayConfigure(source) {
  return source?.type === 'window' && source.frameType !== 'nested' && source.url.startsWith(self.registration.scope);
}

function onMessage(e) {
  const m = e.data ?? {};
  const port = e.ports[0];
  const handle = {
    [Msg.routerConfig]: () => configure(m.config),
    [Msg.hostEngine]: () => host(m.url, m.capable !== false),
    [Msg.offerEngine]: () => offer(m, e.source),
  }[m.type];
  if (!handle || !port) return;
  if (!mayConfigure(e.source)) {
    const refused = () => { throw new CandlelightError('forbidden', `${m.type} is taken only from a top-level page in ${self.registration.scope}`); };
    return e.waitUntil(serve(port, m, refused));
  }
  e.waitUntil(serve(port, m, handle));
}

// The local route's page engine: the page that offered it answers over a port, as a Response
// shaped like a provider's; null when that page is gone (the engine hosted here answers then).
async function answerLocally(body, signal) {
  const client = local.client && (await self.clients.get(local.client));
  if (!client) return null;
  const { port1, port2 } = new MessageChannel();
  client.postMessage({ type: Msg.localAnswer, body }, [port2]);
  return receiveResponse(port1, signal);
}

// Health events for the app: healthy, degraded, critical or down, sent to every page when the
// level changes.
let lastHealth = 'healthy';
async function announceHealth(r) {
  const level = r.health();
  if (level === lastHealth) return;
  lastHealth = level;
  for (const client of await self.clients.matchAll()) client.postMessage({ type: Msg.health, level });
}

const jsonResponse = (status, text) => new Response(text, { status, headers: { 'content-type': 'application/json' } });

/** The body's text, read no further than `max` + 1 bytes: the router refuses what is longer,
 *  and a page cannot make this worker hold more. */
async function readCapped(request, max) {
  const reader = request.body?.getReader();
  if (!reader) return '';
  const parts = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    size += value.byteLength;
    if (size > max) {
      reader.cancel().catch(() => {});
      break;
    }
  }
  return new TextDecoder().decode(await new Blob(parts).arrayBuffer());
}

async function answer(request) {
  const r = await router();
  const h = request.headers;
  const refused = r.checkCaller(request.mode, h.get('content-type'), h.get('sec-fetch-site'), h.get('origin'), self.location.origin);
  if (refused) return jsonResponse(refused.status, refused.body);
  await findLocal();
  const body = await readCapped(request, r.maxRequestBytes());
  const stop = new AbortController();
  request.signal?.addEventListener('abort', () => stop.abort());
  const enc = new TextEncoder();
  return new Promise((resolve) => {
    let controller;
    const stream = new ReadableStream({ start(c) { controller = c; }, cancel() { stop.abort(); } });
    const sink = {
      start: (status, headers) => {
        try {
          resolve(new Response(stream, { status, headers }));
        } catch (err) {
          // A header the browser refuses must not leave the app's fetch unsettled.
          resolve(jsonResponse(500, JSON.stringify({ error: { message: String(err?.message ?? err), type: 'server_error', code: 'router' } })));
          stop.abort();
        }
      },
      write: (text) => { try { controller.enqueue(enc.encode(text)); } catch { stop.abort(); } },
      close: () => { try { controller.close(); } catch {} },
    };
    r.answer(body, sink, local.client ? answerLocally : null, stop.signal)
      .catch((err) => resolve(new Response(JSON.stringify({ error: { message: String(err?.message ?? err), type: 'server_error' } }), { status: 500 })))
      .finally(() => announceHealth(r));
  });
}

/** Answers `e` if it is one of the router's requests (`/v1/...` on this worker's origin);
 *  false otherwise, so the worker's own fetch handling goes on. */
export function routerFetch(e) {
  const url = new URL(e.request.url);
  if (url.origin !== self.location.origin) return false;
  if (url.pathname === '/v1/chat/completions' && e.request.method === 'POST') {
    e.respondWith(answer(e.request));
  } else if (url.pathname === '/v1/models') {
    e.respondWith(router().then((r) => new Response(r.models(local.client ? local.model : null), { headers: { 'content-type': 'application/json' } })));
  } else if (url.pathname === '/v1/metrics') {
    e.respondWith(router().then((r) => new Response(r.metrics(), { headers: { 'content-type': 'text/plain; version=0.0.4' } })));
  } else {
    return false;
  }
  return true;
}

/** Serves the router from this service worker: its messages (configuration, local engine) and
 *  its `/v1/` requests. Call once, at the top level of the worker's script. */
export function installRouter() {
  self.addEventListener('message', onMessage);
  self.addEventListener('fetch', routerFetch);
}

// Requests whose response decides a context's cross-origin isolation: documents and workers.
const ISOLATED_DESTINATIONS = new Set(['document', 'iframe', 'frame', 'worker', 'sharedworker']);

/** Whether `request` loads a document or a worker of this worker's origin: the responses
 *  `withCrossOriginIsolation` should go on. */
export function decidesIsolation(request) {
  const sameOrigin = new URL(request.url).origin === self.location.origin;
  return sameOrigin && (request.mode === 'navigate' || ISOLATED_DESTINATIONS.has(request.destination));
}

/** `response` with COOP `same-origin` and COEP (`require-corp`, or `credentialless`) added, so a
 *  page served through this worker is cross-origin isolated and gets the threaded build, on a
 *  static host that cannot send headers. The price, for the whole page: every cross-origin
 *  subresource (image, script, iframe) must then come with CORS or a
 *  `Cross-Origin-Resource-Policy` header (`credentialless`: or be fetched without cookies; not
 *  in Safari), and popups of other origins lose their `window.opener`. Redirects, errors and
 *  opaque responses pass unchanged. */
export function withCrossOriginIsolation(response, { coep = 'require-corp' } = {}) {
  if (!response || response.type === 'opaqueredirect' || response.type === 'opaque' || response.type === 'error' || response.status === 0) return response;
  const headers = new Headers(response.headers);
  headers.set('Cross-Origin-Opener-Policy', 'same-origin');
  headers.set('Cross-Origin-Embedder-Policy', coep === 'credentialless' ? 'credentialless' : 'require-corp');
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

/** For a worker with no fetch handling of its own: answers `e` from the network with
 *  `withCrossOriginIsolation` if it loads a document or worker of this origin; false otherwise.
 *  The first visit is not controlled yet, so isolation (and threads) start at the next one. */
export function isolationFetch(e, options) {
  if (!decidesIsolation(e.request)) return false;
  e.respondWith(fetch(e.request).then((r) => withCrossOriginIsolation(r, options)));
  return true;
}
