// The page's side of the router's local route: the service worker asks this page's engine to
// answer a request, and the chunks go back over a MessageChannel as SSE text.
import { assessDevice, probeDevice } from './index.js';

const post = (target, message) => new Promise((resolve) => {
  const { port1, port2 } = new MessageChannel();
  port1.onmessage = (e) => resolve(e.data);
  target.postMessage(message, [port2]);
});

const status = (code) => ({ invalid_request: 400, context_overflow: 400, aborted: 499 }[code] ?? 503);

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
    const body = JSON.parse(e.data.body);
    const controller = new AbortController();
    port.onmessage = ({ data }) => data.abort && controller.abort();
    try {
      const out = await engine.chat.completions.create({ ...body, signal: controller.signal });
      if (!body.stream) {
        port.postMessage({ start: true, status: 200, headers: { 'content-type': 'application/json' } });
        return port.postMessage({ text: JSON.stringify(out), end: true });
      }
      port.postMessage({ start: true, status: 200, headers: { 'content-type': 'text/event-stream' } });
      for await (const chunk of out) port.postMessage({ text: `data: ${JSON.stringify(chunk)}\n\n` });
      port.postMessage({ text: 'data: [DONE]\n\n', end: true });
    } catch (err) {
      const error = { message: err.message, type: err.code === 'invalid_request' ? 'invalid_request_error' : 'server_error', code: err.code ?? null };
      port.postMessage({ start: true, status: status(err.code), headers: { 'content-type': 'application/json' } });
      port.postMessage({ text: JSON.stringify({ error }), end: true });
    }
  });
  await offer();
  return verdict;
}
