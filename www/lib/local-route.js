// The router's local route: an engine answers a chat-completions request as a provider would.
// Either a page offers its engine (the service worker asks it, and the chunks come back over a
// MessageChannel as SSE text), or the service worker runs one itself where it has WebGPU.
import { assessDevice, probeDevice } from './index.js';

const post = (target, message) => new Promise((resolve) => {
  const { port1, port2 } = new MessageChannel();
  port1.onmessage = (e) => resolve(e.data);
  target.postMessage(message, [port2]);
});

const status = (code) => ({ invalid_request: 400, context_overflow: 400, aborted: 499 }[code] ?? 503);

/** `engine`'s answer to a chat-completions request body, as the Response a provider would give:
 *  SSE for a stream, JSON otherwise, an OpenAI-style error body on failure. */
export async function engineResponse(engine, body, signal) {
  const json = (value, code = 200) => new Response(JSON.stringify(value), { status: code, headers: { 'content-type': 'application/json' } });
  try {
    const out = await engine.chat.completions.create({ ...body, signal });
    if (!body.stream) return json(out);
    const enc = new TextEncoder();
    const stream = new ReadableStream({
      async start(c) {
        try {
          for await (const chunk of out) c.enqueue(enc.encode(`data: ${JSON.stringify(chunk)}\n\n`));
          c.enqueue(enc.encode('data: [DONE]\n\n'));
          c.close();
        } catch (e) {
          c.error(e);
        }
      },
    });
    return new Response(stream, { headers: { 'content-type': 'text/event-stream' } });
  } catch (err) {
    const type = err.code === 'invalid_request' ? 'invalid_request_error' : 'server_error';
    return json({ error: { message: err.message, type, code: err.code ?? null } }, status(err.code));
  }
}

/** Offers `engine` (Engine or WorkerEngine) to the service worker's router as the local route.
 *  Without `capable`, the device is probed (once, then cached) and judged against
 *  `minTokensPerS` (default 8): too weak, and `auto` mode prefers remote providers. Resolves to
 *  the verdict. */
export async function offerLocalEngine(engine, { capable, minTokensPerS = 8 } = {}) {
  const registration = await navigator.serviceWorker.ready;
  let verdict = capable === undefined ? null : { verdict: capable ? 'capable' : 'tooWeak', reason: 'set by the app' };
  if (!verdict) {
    const profile = await probeDevice();
    const size = engine.info.size;
    verdict = { ...(await assessDevice(profile, { fileBytes: size, bytesPerToken: size, stored: true }, minTokensPerS)), profile };
  }
  const offer = () => post(registration.active, { type: 'local-engine', ready: true, capable: verdict.verdict === 'capable', model: engine.info.id });
  navigator.serviceWorker.addEventListener('message', async (e) => {
    // A restarted service worker has forgotten the offer: make it again.
    if (e.data?.type === 'candlelight-engine?') return offer();
    if (e.data?.type !== 'candlelight-local') return;
    const port = e.ports[0];
    const controller = new AbortController();
    port.onmessage = ({ data }) => data.abort && controller.abort();
    const res = await engineResponse(engine, JSON.parse(e.data.body), controller.signal);
    port.postMessage({ start: true, status: res.status, headers: Object.fromEntries(res.headers) });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        port.postMessage({ text: value });
      }
    } catch {
      // The answer broke off (aborted, or the engine failed): the router sees a cut stream.
    }
    port.postMessage({ end: true });
  });
  await offer();
  return verdict;
}

/** Asks the service worker to run a model itself, on WebGPU, so the local route needs no page
 *  (none open, or all closed mid-answer). The model is loaded from IndexedDB (or downloaded
 *  there), and again whenever the service worker restarts. Resolves to `{ ok: true, id,
 *  backend }`, or `{ ok: false, reason }` where the service worker has no WebGPU: then offer a
 *  page's engine instead. */
export async function hostEngineInServiceWorker(url, { capable = true } = {}) {
  const registration = await navigator.serviceWorker.ready;
  return post(registration.active, { type: 'host-engine', url: new URL(url, location.href).href, capable });
}
