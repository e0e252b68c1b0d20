// candlelight's public JavaScript API: `Engine` runs the model in this thread (a worker, an
// extension page); `WorkerEngine` has the same API and runs it in a dedicated worker, so a page's
// UI never blocks. Both speak the OpenAI / DeepSeek chat-completions shapes.
import init, {
  EngineCore, cachedModels, deleteModel, memoryBytes, probeDevice as probe, assessDevice as assess,
  saveConversation, listConversations, loadConversation, deleteConversation,
} from './candlelight.js';

let ready = null;

/** Loads the wasm module once. `wasm` overrides where it comes from (a URL, Response or Module). */
export function initWasm(wasm) {
  ready ??= init(wasm ? { module_or_path: wasm } : undefined);
  return ready;
}

/** Every failure: `code` is stable (quota_exceeded, network, integrity, unsupported_model, ...). */
export class CandlelightError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'CandlelightError';
    this.code = code;
    Object.assign(this, extra);
  }
}

export function toError(e) {
  if (e instanceof CandlelightError) return e;
  if (e && e.name === 'CandlelightError') {
    const { name, message, code, stack, ...extra } = e;
    return new CandlelightError(code, message, extra);
  }
  if (e && e.name === 'AbortError') return new CandlelightError('aborted', 'aborted');
  return new CandlelightError('internal', String(e?.message ?? e));
}

const aborted = () => new CandlelightError('aborted', 'the request was aborted');

// One MessageChannel hop yields to the event loop without setTimeout's 4 ms clamp, so abort
// messages and UI events run between tokens.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
const yieldNow = () => new Promise((resolve) => {
  waiting.push(resolve);
  channel.port2.postMessage(null);
});

export class Engine {
  #core;

  /** Loads a GGUF model from a URL (kept in IndexedDB, resumable) or a File/Blob. */
  static async load(source, options = {}) {
    await initWasm(options.wasmUrl);
    if (options.signal?.aborted) throw aborted();
    try {
      return new Engine(await EngineCore.load(source, options));
    } catch (e) {
      throw toError(e);
    }
  }

  /** Model files kept in IndexedDB. */
  static async cached() {
    await initWasm();
    return cachedModels().catch((e) => { throw toError(e); });
  }

  /** Frees a cached model file; false if it was not cached. */
  static async delete(url) {
    await initWasm();
    return deleteModel(url).catch((e) => { throw toError(e); });
  }

  constructor(core) {
    this.#core = core;
    this.chat = { completions: { create: (body) => this.#create(body) } };
  }

  /** The model: id, size, architecture, context, backend ('gpu' or 'cpu'), GPU adapter, and
   *  why `auto` runs on the CPU (no WebGPU, or the GPU was lost mid-answer). */
  get info() {
    return this.#core?.info() ?? null;
  }

  /** Destroys the GPU device as a driver reset would, to test an app's fallback; false on the CPU. */
  loseDevice() {
    return this.#core?.loseDevice() ?? false;
  }

  /** Tokens the prompt of a request body takes (template applied), without running the model. */
  countTokens(body) {
    const { signal, ...request } = body ?? {};
    try {
      return this.#core.countTokens(request);
    } catch (e) {
      throw toError(e);
    }
  }

  /** Bytes of wasm memory this thread holds (its peak: wasm memory never shrinks). */
  memoryBytes() {
    return memoryBytes();
  }

  /** Frees the model's memory; the engine answers nothing afterwards. */
  unload() {
    this.#core?.free();
    this.#core = null;
  }

  // Requests wait their turn in the engine itself (one KV cache): no lock here.
  async #create(body = {}) {
    const { signal, ...request } = body;
    if (!this.#core) throw new CandlelightError('not_loaded', 'the engine was unloaded');
    if (signal?.aborted) throw aborted();
    let completion;
    try {
      completion = this.#core.answer(request);
      signal?.addEventListener('abort', () => completion.abort(), { once: true });
      await completion.start();
    } catch (e) {
      completion?.free();
      throw toError(e);
    }
    if (request.stream) return this.#stream(completion, signal);
    try {
      while (await completion.advance()) {
        await yieldNow();
        if (signal?.aborted) {
          completion.abort();
          throw aborted();
        }
      }
      return completion.response();
    } catch (e) {
      throw toError(e);
    } finally {
      completion.free();
    }
  }

  async *#stream(completion, signal) {
    try {
      for (;;) {
        if (signal?.aborted || !this.#core) {
          completion.abort();
          throw aborted();
        }
        const chunks = await completion.step();
        if (chunks === null) return;
        for (const chunk of chunks) {
          if (signal?.aborted) break;
          yield chunk;
        }
        await yieldNow();
      }
    } catch (e) {
      throw toError(e);
    } finally {
      if (!completion.finished()) completion.abort();
      completion.free();
    }
  }
}

/** Measures this device for the router: WebGPU adapter and limits, memory, cores, storage, and
 *  our CPU and GPU matvec bandwidth. Cached per adapter; `fresh: true` measures again. */
export async function probeDevice({ fresh = false } = {}) {
  await initWasm();
  const gpu = await navigator.gpu?.requestAdapter?.();
  const key = `candlelight-device-profile:${gpu ? 'webgpu' : 'none'}:${navigator.hardwareConcurrency}`;
  const saved = !fresh && globalThis.localStorage?.getItem(key);
  if (saved) return JSON.parse(saved);
  const profile = await probe().catch((e) => { throw toError(e); });
  globalThis.localStorage?.setItem(key, JSON.stringify(profile));
  return profile;
}

/** Whether `profile` can run a model (`{ fileBytes, bytesPerToken, stored }`) at `minTokensPerS`. */
export async function assessDevice(profile, model, minTokensPerS) {
  await initWasm();
  try {
    return assess(profile, model, minTokensPerS);
  } catch (e) {
    throw toError(e);
  }
}

const kept = (f) => async (...args) => {
  await initWasm();
  return f(...args).catch((e) => { throw toError(e); });
};

/** Conversations kept in IndexedDB, so a reload resumes them. `save` takes
 *  `{ id?, title?, messages, model? }` and resolves to the id (made up when missing); `list` gives
 *  `{ id, title, updated, messages }` most recent first. */
export const Conversations = {
  save: kept(saveConversation),
  list: kept(listConversations),
  load: kept(loadConversation),
  delete: kept(deleteConversation),
};

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
export async function chatThroughRouter(request, { signal, url = '/v1/chat/completions' } = {}) {
  await controlled();
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...request, stream: true }), signal,
  });
  const failed = (error) => new CandlelightError(error?.code ?? 'router', error?.message ?? `HTTP ${res.status}`, { status: res.status });
  if (!res.ok || !(res.headers.get('content-type') ?? '').includes('event-stream')) throw failed((await res.json().catch(() => ({}))).error);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  async function* chunks() {
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end).replace(/^data: /, '');
        buffer = buffer.slice(end + 2);
        if (event === '[DONE]') return;
        const chunk = JSON.parse(event);
        if (chunk.error) throw failed(chunk.error);
        yield chunk;
      }
    }
  }
  return Object.assign(chunks(), { route: res.headers.get('x-candlelight-route') });
}

export { WorkerEngine } from './client.js';
export { engineResponse, hostEngineInServiceWorker, offerLocalEngine } from './local-route.js';
