// candlelight's router inside a service worker: `/v1/chat/completions`, `/v1/models` and
// `/v1/metrics` for the worker's own origin, answered by the router (Rust, in wasm). Used by the
// demo's sw.js and the extension's background worker; an app imports it into its own. Glue only:
// the router decides and does the fetching; this file wires requests, the saved configuration
// and the local engine (a page's, offered with offerLocalEngine, or one in this worker where it
// has WebGPU, asked for with hostEngineInServiceWorker).
import { Engine, initWasm } from './index.js';
import { RouterCore } from './candlelight.js';
import { engineResponse } from './local-route.js';

// The Cache API takes http(s) keys only, and an extension's origin is chrome-extension://: the
// saved configuration lives under a reserved name (.invalid never resolves).
const CONFIG = 'https://candlelight.invalid/router-config';
const HOSTED = 'https://candlelight.invalid/hosted-engine';
const OFFERED = 'https://candlelight.invalid/page-engine-offered';
let core = null;
let local = { ready: false, capable: false, client: null, model: null };

async function router() {
  await initWasm();
  if (!core) {
    const saved = await (await caches.open('candlelight-router')).match(CONFIG);
    core = new RouterCore(saved ? await saved.json() : { mode: 'auto', providers: [] });
    core.setLocal(local.ready, local.capable);
  }
  return core;
}

async function configure(config) {
  await initWasm();
  const next = new RouterCore(config); // throws on a bad configuration, keeping the old one
  await (await caches.open('candlelight-router')).put(CONFIG, new Response(JSON.stringify(config)));
  core = next;
  core.setLocal(local.ready, local.capable);
  // A new configuration starts with fresh provider health: the pages hear it.
  await announceHealth(core);
}

// An engine in this worker, where it has WebGPU (a CPU engine here would block every request):
// { url, capable, engine: Promise<Engine> }. Its URL is saved, so a restarted worker loads it again.
let hosted = null;

async function host(url, capable) {
  const adapter = await self.navigator.gpu?.requestAdapter?.().catch(() => null);
  if (!adapter) throw new Error('this service worker has no WebGPU: offer a page\'s engine instead');
  if (hosted?.url !== url) {
    const engine = Engine.load(url, { backend: 'gpu' });
    hosted = { url, capable, engine };
    engine.catch(() => { if (hosted?.engine === engine) hosted = null; });
  }
  const engine = await hosted.engine;
  await (await caches.open('candlelight-router')).put(HOSTED, new Response(JSON.stringify({ url, capable })));
  if (!local.client) local = { ready: true, capable, client: null, model: engine.info.id };
  (await router()).setLocal(local.ready, local.capable);
  return engine;
}

// A service worker stopped while idle forgets which page offered its engine. The first request
// after a start asks the pages once, and waits briefly for an offer; failing that, it loads the
// engine it hosted before.
let asked = null;
let offered = () => {};
function findLocal() {
  if (local.ready) return Promise.resolve();
  asked ??= (async () => {
    const kept = await caches.open('candlelight-router');
    const pages = await self.clients.matchAll();
    // Only an origin whose pages have offered an engine before waits for one.
    if (pages.length && (await kept.match(OFFERED))) {
      const wait = new Promise((resolve) => { offered = resolve; setTimeout(resolve, 500); });
      for (const client of pages) client.postMessage({ type: 'candlelight-engine?' });
      await wait;
    }
    const saved = !local.ready && (await kept.match(HOSTED));
    if (saved) {
      const { url, capable } = await saved.json();
      await host(url, capable).catch(() => {});
    }
  })();
  return asked;
}

function onMessage(e) {
  const m = e.data ?? {};
  const reply = (v) => e.ports[0]?.postMessage(v);
  if (m.type === 'router-config') {
    e.waitUntil(configure(m.config).then(() => reply({ ok: true }), (err) => reply({ error: String(err?.message ?? err) })));
  } else if (m.type === 'host-engine') {
    e.waitUntil(host(m.url, m.capable !== false).then(
      (engine) => reply({ ok: true, id: engine.info.id, backend: engine.info.backend }),
      (err) => reply({ ok: false, reason: String(err?.message ?? err) }),
    ));
  } else if (m.type === 'local-engine') {
    local = { ready: m.ready, capable: m.capable, client: e.source?.id ?? null, model: m.model ?? null };
    e.waitUntil(router().then(async (r) => {
      r.setLocal(local.ready, local.capable);
      offered();
      await (await caches.open('candlelight-router')).put(OFFERED, new Response('1'));
      reply({ ok: true });
    }));
  }
}

// The local route: the page that offered its engine answers, chunk by chunk, over a port; with
// no such page, the engine hosted here.
async function answerLocally(body, signal) {
  const client = local.client && (await self.clients.get(local.client));
  if (!client && hosted) return engineResponse(await hosted.engine, JSON.parse(body), signal);
  if (!client) throw new Error('the page with the local engine is gone');
  const { port1, port2 } = new MessageChannel();
  const enc = new TextEncoder();
  signal?.addEventListener('abort', () => port1.postMessage({ abort: true }));
  return new Promise((resolve, reject) => {
    let controller;
    const stream = new ReadableStream({ start(c) { controller = c; }, cancel() { port1.postMessage({ abort: true }); } });
    port1.onmessage = ({ data }) => {
      if (data.start) resolve(new Response(stream, { status: data.status, headers: data.headers }));
      if (data.text) controller.enqueue(enc.encode(data.text));
      if (data.end) controller.close();
      if (data.error) reject(new Error(data.error));
    };
    client.postMessage({ type: 'candlelight-local', body }, [port2]);
  });
}

// Health events for the app: healthy, degraded, critical or down, sent to every page when the
// level changes.
let lastHealth = 'healthy';
async function announceHealth(r) {
  const level = r.health();
  if (level === lastHealth) return;
  lastHealth = level;
  for (const client of await self.clients.matchAll()) client.postMessage({ type: 'candlelight-health', level });
}

async function answer(request) {
  const r = await router();
  await findLocal();
  const body = await request.text();
  const stop = new AbortController();
  request.signal?.addEventListener('abort', () => stop.abort());
  const enc = new TextEncoder();
  return new Promise((resolve) => {
    let controller;
    const stream = new ReadableStream({ start(c) { controller = c; }, cancel() { stop.abort(); } });
    const sink = {
      start: (status, headers) => resolve(new Response(stream, { status, headers })),
      write: (text) => { try { controller.enqueue(enc.encode(text)); } catch { stop.abort(); } },
      close: () => { try { controller.close(); } catch {} },
    };
    r.answer(body, sink, local.ready ? answerLocally : null, stop.signal)
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
    e.respondWith(router().then((r) => new Response(r.models(local.model), { headers: { 'content-type': 'application/json' } })));
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
