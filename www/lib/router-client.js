// A page's side of the router in the service worker (service-worker.js): its configuration, the
// page's engine offered as the local route (or one hosted in the worker itself), and a chat
// through `/v1/chat/completions` read with the Rust SSE decoder.
import { assessDevice, probeDevice } from './device.js';
import { CandlelightError, toError } from './errors.js';
import { Msg, request, sendResponse } from './protocol.js';
import { glue, initWasm } from './wasm.js';

const worker = async () => (await navigator.serviceWorker.ready).active;

/** Gives the router its configuration (the `RouterConfig` shape: mode, providers, policies);
 *  rejects with an `invalid_request` error when the router refuses it, keeping the old one. */
export async function configureRouter(config) {
  return request(await worker(), { type: Msg.routerConfig, config });
}

/** `engine`'s answer to a chat-completions request body, as the Response a provider would give:
 *  SSE for a stream, JSON otherwise, an OpenAI-style error body on failure. */
export function engineResponse(engine, body, signal) {
  return engine.respond(body, signal);
}

// The engine this page offers as the local route, and the one listener that answers for it:
// offering again swaps the engine, it never adds a listener (each would answer every request).
let offered = null;
let listening = false;

const offerMessage = () => ({ type: Msg.offerEngine, ready: !!offered, capable: !!offered?.capable, model: offered?.id ?? null });

function listen() {
  if (listening) return;
  listening = true;
  navigator.serviceWorker.addEventListener('message', async (e) => {
    // A restarted service worker has forgotten the offer: make it again.
    if (e.data?.type === Msg.engineWanted && offered) return request(await worker(), offerMessage());
    if (e.data?.type !== Msg.localAnswer || !e.ports[0]) return;
    // Not awaited: the port listens for an abort and the heartbeat while the engine starts.
    const controller = new AbortController();
    const response = offered
      ? Promise.resolve().then(() => engineResponse(offered.engine, JSON.parse(e.data.body), controller.signal))
      : new Response(JSON.stringify({ error: { message: 'this page no longer offers an engine', type: 'server_error', code: 'no_route_available' } }), { status: 503, headers: { 'content-type': 'application/json' } });
    sendResponse(e.ports[0], response, controller);
  });
}

/** Offers `engine` (Engine or WorkerEngine) to the service worker's router as the local route,
 *  in place of any engine this page offered before. Without `capable`, the device is probed
 *  (once, then cached) and judged against `minTokensPerS` (default 8): too weak, and `auto`
 *  mode prefers remote providers. Resolves to the verdict. */
export async function offerLocalEngine(engine, { capable, minTokensPerS = 8 } = {}) {
  let verdict = capable === undefined ? null : { verdict: capable ? 'capable' : 'tooWeak', reason: 'set by the app' };
  if (!verdict) {
    const profile = await probeDevice();
    const size = engine.info.size;
    verdict = { ...(await assessDevice(profile, { fileBytes: size, bytesPerToken: size, stored: true }, minTokensPerS)), profile };
  }
  offered = { engine, capable: verdict.verdict === 'capable', id: engine.info.id };
  listen();
  await request(await worker(), offerMessage());
  return verdict;
}

/** Withdraws this page's engine from the router: requests go to other routes from now on, and
 *  one already on its way here is answered with a 503 the router fails over from. */
export async function unofferLocalEngine() {
  offered = null;
  await request(await worker(), offerMessage());
}

/** Asks the service worker to run a model itself, on WebGPU, so the local route needs no page
 *  (none open, or all closed mid-answer). The model is loaded from IndexedDB (or downloaded
 *  there), and again whenever the service worker restarts. Resolves to `{ ok: true, id,
 *  backend }`, or `{ ok: false, reason }` where the service worker has no WebGPU: then offer a
 *  page's engine instead. */
export async function hostEngineInServiceWorker(url, { capable = true } = {}) {
  try {
    const hosted = await request(await worker(), { type: Msg.hostEngine, url: new URL(url, location.href).href, capable });
    return { ok: true, ...hosted };
  } catch (e) {
    return { ok: false, reason: e.message };
  }
}

/** Until a service worker controls this page: a page loaded before its worker activated is
 *  taken over by clients.claim(), and its requests would miss the router until then. */
async function controlled(ms = 10000) {
  const sw = globalThis.navigator?.serviceWorker;
  if (!sw || sw.controller) return;
  if (!(await sw.getRegistration())) throw new CandlelightError('router', 'no service worker is registered for this page');
  await new Promise((resolve) => {
    sw.addEventListener('controllerchange', resolve, { once: true });
    setTimeout(resolve, ms);
  });
  if (!sw.controller) throw new CandlelightError('router', 'the service worker does not control this page yet: reload it');
}

/** A streamed chat completion from the service worker's router (`/v1/chat/completions`): an
 *  async iterator of chunks, with `route` naming what answered (local, a provider, cache).
 *  An error answer, or an error event mid-stream, throws a CandlelightError. */
export async function chatThroughRouter(body, { signal, url = '/v1/chat/completions' } = {}) {
  await Promise.all([initWasm(), controlled()]);
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }), signal,
  }).catch((e) => { throw toError(e); });
  const failed = (error) => new CandlelightError(error?.code ?? 'router', error?.message ?? `HTTP ${res.status}`, { status: res.status });
  if (!res.ok || !(res.headers.get('content-type') ?? '').includes('event-stream')) throw failed((await res.json().catch(() => ({}))).error);
  const reader = res.body.getReader();
  const decoder = new glue.SseDecoder();
  async function* chunks() {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        for (const data of done ? decoder.finish() : decoder.push(value)) {
          if (data === null) return;
          const chunk = JSON.parse(data);
          if (chunk.error) throw failed(chunk.error);
          yield chunk;
        }
        if (done) return;
      }
    } catch (e) {
      throw toError(e);
    } finally {
      decoder.free();
    }
  }
  // The router writes non-ASCII provider names %-encoded (headers carry Latin-1 only).
  const route = res.headers.get('x-candlelight-route');
  return Object.assign(chunks(), { route: route && decodeURIComponent(route) });
}
