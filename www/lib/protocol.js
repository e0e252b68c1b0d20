// How the package's threads talk, in one place: the engine worker's operations, the messages
// between pages and the router's service worker, one request/reply over a MessageChannel, and a
// Response carried over a port (an engine's answer to the service worker, or to the page).
import { toError, toWire } from './errors.js';

/** Operations a page asks its engine worker for (worker-engine.js → worker.js). */
export const Op = Object.freeze({
  load: 'load', create: 'create', respond: 'respond', count: 'count', lose: 'lose', memory: 'memory', profile: 'profile',
  cached: 'cached', delete: 'delete', checkForUpdate: 'check-for-update',
});

/** Messages between pages and the router's service worker (`type`). */
export const Msg = Object.freeze({
  /** page → worker: a new router configuration. */
  routerConfig: 'router-config',
  /** page → worker: load a model into the worker itself. */
  hostEngine: 'host-engine',
  /** page → worker: this page's engine is the local route. */
  offerEngine: 'local-engine',
  /** worker → pages: a restarted worker asks for the pages' engines again. */
  engineWanted: 'candlelight-engine?',
  /** worker → page: answer this request body on your engine, over the port. */
  localAnswer: 'candlelight-local',
  /** worker → pages: the router's health level changed. */
  health: 'candlelight-health',
});

/** Posts `message` to `target` with a port for the reply: resolves to its `result`, rejects with
 *  its `error`; other messages on the port (progress, chunks) go to `onEvent`. `signal` sends
 *  `{abort: true}` back. */
export function request(target, message, { onEvent, signal } = {}) {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve, reject) => {
    const onAbort = () => port1.postMessage({ abort: true });
    signal?.addEventListener('abort', onAbort, { once: true });
    port1.onmessage = ({ data }) => {
      if (!('result' in data) && !('error' in data)) return onEvent?.(data);
      signal?.removeEventListener('abort', onAbort);
      port1.close();
      if ('error' in data) reject(toError(data.error));
      else resolve(data.result);
    };
    target.postMessage(message, [port2]);
  });
}

/** The serving side of `request`: `handle(message, { signal, emit })` answers on `port`;
 *  `emit` sends events, an `{abort}` from the asker aborts `signal`. */
export async function serve(port, message, handle) {
  const controller = new AbortController();
  port.onmessage = ({ data }) => data?.abort && controller.abort();
  try {
    port.postMessage({ result: await handle(message, { signal: controller.signal, emit: (e) => port.postMessage(e) }) });
  } catch (e) {
    port.postMessage({ error: toWire(e) });
  }
}

/** How often the receiving end of a Response says it is still there, and how many beats may
 *  be missed before the sender stops: a service worker restarted mid-answer leaves a dead port,
 *  and the page would otherwise generate into it to the end. */
export const HEARTBEAT_MS = 1000;
const MISSED_BEATS = 5;

/** Sends `response` (a Response, or a promise of one) over `port`: its head, its body as text
 *  pieces, then the end. An `{abort}` from the other side, or its heartbeat stopping, aborts
 *  `controller`, from the start: while an engine waits for its turn, or generates a whole
 *  answer, the other side may already have given up. A promise that rejects is sent as an
 *  OpenAI-style error; a body that breaks off just ends: the reader sees a stream without its
 *  `[DONE]`. */
export async function sendResponse(port, response, controller) {
  let beat = Date.now();
  port.onmessage = ({ data }) => {
    if (data?.beat) beat = Date.now();
    if (data?.abort) controller?.abort();
  };
  const watch = setInterval(() => {
    if (Date.now() - beat > MISSED_BEATS * HEARTBEAT_MS) controller?.abort();
  }, HEARTBEAT_MS);
  try {
    await sendBody(port, await Promise.resolve(response).catch(failedResponse));
  } finally {
    clearInterval(watch);
  }
}

/** An engine's failure to answer at all, as the answer a provider would give. */
function failedResponse(e) {
  const err = toError(e);
  const status = err.code === 'aborted' ? 499 : 503;
  return new Response(JSON.stringify({ error: { message: err.message, type: 'server_error', code: err.code } }), { status, headers: { 'content-type': 'application/json' } });
}

async function sendBody(port, response) {
  port.postMessage({ start: { status: response.status, headers: Object.fromEntries(response.headers) } });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      port.postMessage({ text: value });
    }
  } catch {
    // Aborted, or the engine failed mid-answer.
  }
  port.postMessage({ end: true });
}

/** The other end of `sendResponse`: a Response built from what arrives on `port`; `signal`
 *  (and cancelling the body) sends `{abort}` back. */
export function receiveResponse(port, signal) {
  const beats = setInterval(() => port.postMessage({ beat: true }), HEARTBEAT_MS);
  const abort = () => {
    clearInterval(beats);
    port.postMessage({ abort: true });
  };
  signal?.addEventListener('abort', abort, { once: true });
  return new Promise((resolve) => {
    let body;
    const enc = new TextEncoder();
    const stream = new ReadableStream({ start(c) { body = c; }, cancel: abort });
    port.onmessage = ({ data }) => {
      if (data.start) resolve(new Response(stream, data.start));
      else if ('text' in data) body.enqueue(enc.encode(data.text));
      else if (data.end) {
        clearInterval(beats);
        body.close();
      }
    };
  });
}
