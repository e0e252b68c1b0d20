// The page's side of an engine running in a dedicated worker: the same API as `Engine`, every
// call a message to worker.js.
import { CandlelightError } from './index.js';

const plain = (options = {}) => {
  const out = {};
  for (const [k, v] of Object.entries(options)) {
    if (typeof v !== 'function' && !(v instanceof AbortSignal) && k !== 'worker') out[k] = v;
  }
  return out;
};

const fromWire = (e) => {
  const { code, message, ...extra } = e;
  return new CandlelightError(code, message, extra);
};

export class WorkerEngine {
  #worker;
  #next = 1;
  #pending = new Map();

  /** Starts a worker and loads the model there; options as `Engine.load`, plus `worker`. */
  static async load(source, options = {}) {
    const engine = new WorkerEngine(options.worker);
    try {
      engine.info = await engine.#call({ op: 'load', source, options: plain(options) }, options);
    } catch (e) {
      engine.#worker.terminate();
      throw e;
    }
    return engine;
  }

  static async cached() {
    const engine = new WorkerEngine();
    try {
      return await engine.#call({ op: 'cached' });
    } finally {
      engine.#worker.terminate();
    }
  }

  static async delete(url) {
    const engine = new WorkerEngine();
    try {
      return await engine.#call({ op: 'delete', url });
    } finally {
      engine.#worker.terminate();
    }
  }

  constructor(worker) {
    this.#worker = worker ?? new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.#worker.onmessage = ({ data }) => {
      // A finished answer carries the engine's info: `auto` may have moved to the CPU.
      if (data.info) this.info = data.info;
      this.#pending.get(data.id)?.(data);
    };
    this.#worker.onerror = (ev) => {
      const err = new CandlelightError('internal', `engine worker failed: ${ev.message ?? 'unknown error'}`);
      for (const handle of this.#pending.values()) handle({ error: err });
    };
    this.chat = { completions: { create: (body) => this.#create(body) } };
  }

  #call(message, { signal, onProgress, onChunk } = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new CandlelightError('aborted', 'the request was aborted'));
      const onAbort = () => this.#worker.postMessage({ op: 'abort', target: id });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, (data) => {
        if (data.progress) return onProgress?.(data.progress);
        if (data.chunk) return onChunk?.(data.chunk);
        this.#pending.delete(id);
        signal?.removeEventListener('abort', onAbort);
        if (data.error) reject(data.error instanceof Error ? data.error : fromWire(data.error));
        else resolve(data.result);
      });
      this.#worker.postMessage({ id, ...message });
    });
  }

  async #create(body = {}) {
    const { signal, ...request } = body;
    if (!request.stream) return this.#call({ op: 'create', body: request }, { signal });
    // Chunks arrive as messages; the iterator hands them out in order.
    const queue = [];
    let wake = null;
    let end = null;
    const done = this.#call({ op: 'create', body: request }, {
      signal,
      onChunk: (chunk) => { queue.push(chunk); wake?.(); },
    }).then(() => { end = { ok: true }; wake?.(); }, (error) => { end = { error }; wake?.(); });
    return (async function* () {
      for (;;) {
        if (queue.length) { yield queue.shift(); continue; }
        if (end) {
          await done;
          if (end.error) throw end.error;
          return;
        }
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
      }
    })();
  }

  /** Tokens the prompt of a request body takes (template applied), without running the model. */
  countTokens(body) {
    const { signal, ...request } = body ?? {};
    return this.#call({ op: 'count', body: request });
  }

  /** Destroys the worker's GPU device as a driver reset would; false on the CPU. */
  loseDevice() {
    return this.#call({ op: 'lose' });
  }

  /** Bytes of wasm memory the worker holds (its peak: wasm memory never shrinks). */
  memoryBytes() {
    return this.#call({ op: 'memory' });
  }

  /** Frees the model and stops the worker. */
  unload() {
    this.#worker.terminate();
    for (const handle of this.#pending.values()) handle({ error: new CandlelightError('aborted', 'the engine was unloaded') });
    this.#pending.clear();
  }
}
