// `WorkerEngine`: the same API as `Engine`, with the model in a dedicated worker (worker.js), so
// a page's UI never blocks. Every call is one request of protocol.js to the worker.
import { CandlelightError, aborted } from './errors.js';
import { Op, receiveResponse, request } from './protocol.js';

/** Load options without what cannot cross to the worker (callbacks, the signal, the worker). */
const plain = (options = {}) => {
  const out = {};
  for (const [k, v] of Object.entries(options)) {
    if (typeof v !== 'function' && !(v instanceof AbortSignal) && k !== 'worker') out[k] = v;
  }
  return out;
};

export class WorkerEngine {
  #worker;
  #calls = new Set();

  /** Starts a worker and loads the model there; options as `Engine.load`, plus `worker`. */
  static async load(source, options = {}) {
    const engine = new WorkerEngine(options.worker);
    try {
      engine.info = await engine.#call({ op: Op.load, source, options: plain(options) }, {
        signal: options.signal,
        onEvent: (e) => e.progress && options.onProgress?.(e.progress),
      });
    } catch (e) {
      engine.#worker.terminate();
      throw e;
    }
    return engine;
  }

  static async cached() {
    const engine = new WorkerEngine();
    try {
      return await engine.#call({ op: Op.cached });
    } finally {
      engine.#worker.terminate();
    }
  }

  static async delete(url) {
    const engine = new WorkerEngine();
    try {
      return await engine.#call({ op: Op.delete, url });
    } finally {
      engine.#worker.terminate();
    }
  }

  static async checkForUpdate(url, { hubMirrors } = {}) {
    const engine = new WorkerEngine();
    try {
      return await engine.#call({ op: Op.checkForUpdate, url: String(url), hubMirrors });
    } finally {
      engine.#worker.terminate();
    }
  }

  constructor(worker) {
    this.#worker = worker ?? new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.#worker.onerror = (ev) => {
      const err = new CandlelightError('internal', `engine worker failed: ${ev.message ?? 'unknown error'}`);
      for (const fail of this.#calls) fail(err);
    };
    this.chat = { completions: { create: (body) => this.#create(body) } };
  }

  // One request to the worker; a failing worker or `unload` rejects it.
  #call(message, options = {}) {
    let fail;
    const failed = new Promise((_, reject) => { fail = reject; });
    this.#calls.add(fail);
    const answered = request(this.#worker, message, options);
    return Promise.race([answered, failed]).finally(() => this.#calls.delete(fail));
  }

  async #create(body = {}) {
    const { signal, ...request } = body;
    if (signal?.aborted) throw aborted();
    const done = (info) => { if (info) this.info = info; };
    if (!request.stream) {
      const { answer, info } = await this.#call({ op: Op.create, body: request }, { signal });
      done(info);
      return answer;
    }
    // Chunks arrive as events; the iterator hands them out in order.
    const queue = [];
    let wake = null;
    let end = null;
    this.#call({ op: Op.create, body: request }, {
      signal,
      onEvent: (e) => { if (e.chunk) { queue.push(e.chunk); wake?.(); } },
    }).then(({ info }) => { done(info); end = { ok: true }; wake?.(); }, (error) => { end = { error }; wake?.(); });
    return (async function* () {
      for (;;) {
        if (queue.length) { yield queue.shift(); continue; }
        if (end) {
          if (end.error) throw end.error;
          return;
        }
        await new Promise((resolve) => { wake = resolve; });
        wake = null;
      }
    })();
  }

  /** The answer to a chat-completions request body as the Response a provider gives (see
   *  `Engine.respond`), computed in the worker and streamed from there. */
  respond(body, signal) {
    const { port1, port2 } = new MessageChannel();
    this.#worker.postMessage({ op: Op.respond, body }, [port2]);
    return receiveResponse(port1, signal);
  }

  /** Tokens the prompt of a request body takes (template applied), without running the model. */
  countTokens(body) {
    const { signal, ...request } = body ?? {};
    return this.#call({ op: Op.count, body: request });
  }

  /** Destroys the worker's GPU device as a driver reset would; false on the CPU. */
  loseDevice() {
    return this.#call({ op: Op.lose });
  }

  /** As `Engine.profile`, in the worker. */
  profile(on) {
    return this.#call({ op: Op.profile, on });
  }

  /** Bytes of wasm memory the worker holds (its peak: wasm memory never shrinks). */
  memoryBytes() {
    return this.#call({ op: Op.memory });
  }

  /** Frees the model and stops the worker. */
  unload() {
    this.#worker.terminate();
    for (const fail of this.#calls) fail(new CandlelightError('aborted', 'the engine was unloaded'));
    this.#calls.clear();
  }
}
