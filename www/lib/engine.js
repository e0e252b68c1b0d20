// `Engine`: a model running in this thread (a worker, an extension page), answering in the
// OpenAI / DeepSeek chat-completions shapes. Requests wait their turn inside the engine (one KV
// cache); an answer is stepped from here so the thread yields, streams and aborts between tokens.
import { CandlelightError, aborted, toError } from './errors.js';
import { glue, initWasm } from './wasm.js';

// One MessageChannel hop yields to the event loop without setTimeout's 4 ms clamp, so abort
// messages and UI events run between tokens.
const channel = new MessageChannel();
const waiting = [];
channel.port1.onmessage = () => waiting.shift()?.();
// Where ports keep a process alive (Node, a bundler's server-side pass), an import must not.
channel.port1.unref?.();
const yieldNow = () => new Promise((resolve) => {
  waiting.push(resolve);
  channel.port2.postMessage(null);
});

const json = (value, status = 200) => new Response(JSON.stringify(value), { status, headers: { 'content-type': 'application/json' } });

/** A failure as the Response a provider gives: the status and OpenAI-style body Rust maps it to. */
export function errorResponse(e) {
  const { status, body } = glue.errorAnswer(toError(e));
  return json(body, status);
}

export class Engine {
  #core;

  /** Loads a GGUF model from a URL (kept in IndexedDB, resumable) or a File/Blob. */
  static async load(source, options = {}) {
    await initWasm(options.wasmUrl, options);
    if (options.signal?.aborted) throw aborted();
    try {
      return new Engine(await glue.EngineCore.load(source, options));
    } catch (e) {
      throw toError(e);
    }
  }

  /** Model files kept in IndexedDB. */
  static async cached() {
    await initWasm();
    return glue.cachedModels().catch((e) => { throw toError(e); });
  }

  /** Frees a cached model file; false if it was not cached. */
  static async delete(url) {
    await initWasm();
    return glue.deleteModel(url).catch((e) => { throw toError(e); });
  }

  /** Whether the server now has another version of a cached model file, downloading nothing:
   *  `{ url, stored, current, updateAvailable }`. A hub file is compared by its SHA-256, others
   *  by ETag and size. Options: `hubMirrors`, `signal`. */
  static async checkForUpdate(url, options = {}) {
    await initWasm();
    const { hubMirrors, signal } = options;
    return glue.checkForUpdate(String(url), { hubMirrors, signal }).catch((e) => { throw toError(e); });
  }

  constructor(core) {
    this.#core = core;
    this.chat = { completions: { create: (body) => this.#create(body) } };
  }

  /** The model: id, size, architecture, context, backend ('gpu' or 'cpu'), GPU adapter, and
   *  why `auto` runs on the CPU (no WebGPU, or the GPU was lost mid-answer). */
  get info() {
    const info = this.#core?.info();
    // `threads`: the CPU backend's threads (the threaded build's pool, else 1); `relaxedSimd`:
    // whether the loaded build dots with relaxed SIMD.
    return info ? { ...info, threads: glue.computeThreads(), relaxedSimd: glue.relaxedSimd() } : null;
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

  /** Where a step's time goes: `profile(true)` starts timing (from zero), `profile(false)`
   *  stops, `profile()` reads it. On the CPU, milliseconds per step in each part (`matmulMs`,
   *  `attentionMs`, `normsMs`, `otherMs`, `headMs`); on the GPU, dispatches and passes per step
   *  and the CPU time to encode them (`dispatches`, `passes`, `encodeMs`, `submitMs`,
   *  `classes`); both with the `steps` counted. */
  profile(on) {
    const json = this.#core.profile(on);
    return json === undefined ? null : JSON.parse(json);
  }

  /** Bytes of wasm memory this thread holds (its peak: wasm memory never shrinks). */
  memoryBytes() {
    return glue.memoryBytes();
  }

  /** Frees the model's memory; the engine answers nothing afterwards. */
  unload() {
    this.#core?.free();
    this.#core = null;
  }

  /** The answer to a chat-completions request body as the Response a provider gives: SSE when
   *  streamed, JSON otherwise, an OpenAI-style error body on failure. */
  async respond(body, signal) {
    let answer;
    try {
      answer = await this.#start(body, signal);
    } catch (e) {
      return errorResponse(e);
    }
    const { completion, release } = answer;
    if (!body.stream) {
      try {
        await this.#run(completion, signal);
        return json(completion.response());
      } catch (e) {
        return errorResponse(e);
      } finally {
        release();
      }
    }
    const enc = new TextEncoder();
    const stream = new ReadableStream({
      async pull(c) {
        try {
          for (;;) {
            if (signal?.aborted) {
              completion.abort();
              throw aborted();
            }
            const text = await completion.stepText();
            await yieldNow();
            if (text === null) {
              release();
              return c.close();
            }
            if (text) return c.enqueue(enc.encode(text));
          }
        } catch (e) {
          release();
          c.error(toError(e));
        }
      },
      cancel() {
        completion.abort();
        release();
      },
    });
    return new Response(stream, { headers: { 'content-type': 'text/event-stream' } });
  }

  // Waits for the engine's turn, then runs the prompt. `release` frees the answer (once).
  async #start(body = {}, signal) {
    const { signal: _, ...request } = body;
    if (!this.#core) throw new CandlelightError('not_loaded', 'the engine was unloaded');
    if (signal?.aborted) throw aborted();
    let completion;
    try {
      completion = this.#core.answer(request);
    } catch (e) {
      throw toError(e);
    }
    const onAbort = () => completion.abort();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      signal?.removeEventListener('abort', onAbort);
      completion.free();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await completion.start();
      return { completion, release };
    } catch (e) {
      release();
      throw toError(e);
    }
  }

  // Steps a whole answer, yielding between tokens.
  async #run(completion, signal) {
    while (await completion.advance()) {
      await yieldNow();
      if (signal?.aborted) {
        completion.abort();
        throw aborted();
      }
    }
  }

  async #create(body = {}) {
    const { signal } = body;
    const { completion, release } = await this.#start(body, signal);
    if (body.stream) return this.#stream(completion, signal, release);
    try {
      await this.#run(completion, signal);
      return completion.response();
    } catch (e) {
      throw toError(e);
    } finally {
      release();
    }
  }

  async *#stream(completion, signal, release) {
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
      release();
    }
  }
}
