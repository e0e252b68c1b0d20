// The engine's dedicated worker: runs `Engine` and answers WorkerEngine's messages.
import { Engine, CandlelightError, toError } from './index.js';

let engine = null;
const controllers = new Map();

const wire = (e) => {
  const err = toError(e);
  const out = { code: err.code, message: err.message };
  for (const [k, v] of Object.entries(err)) if (typeof v !== 'function' && typeof v !== 'object') out[k] = v;
  return out;
};

self.onmessage = async ({ data }) => {
  const { id, op } = data;
  if (op === 'abort') return controllers.get(data.target)?.abort();
  const reply = (message) => self.postMessage({ id, ...message });
  const controller = new AbortController();
  controllers.set(id, controller);
  try {
    if (op === 'load') {
      engine?.unload();
      engine = null;
      engine = await Engine.load(data.source, { ...data.options, signal: controller.signal, onProgress: (progress) => reply({ progress }) });
      reply({ result: engine.info });
    } else if (op === 'create') {
      if (!engine) throw new CandlelightError('not_loaded', 'no model is loaded');
      const out = await engine.chat.completions.create({ ...data.body, signal: controller.signal });
      if (data.body.stream) {
        for await (const chunk of out) reply({ chunk });
        reply({ result: null, info: engine.info });
      } else {
        reply({ result: out, info: engine.info });
      }
    } else if (op === 'count') {
      if (!engine) throw new CandlelightError('not_loaded', 'no model is loaded');
      reply({ result: engine.countTokens(data.body) });
    } else if (op === 'lose') {
      reply({ result: engine?.loseDevice() ?? false });
    } else if (op === 'memory') {
      if (!engine) throw new CandlelightError('not_loaded', 'no model is loaded');
      reply({ result: engine.memoryBytes() });
    } else if (op === 'cached') {
      reply({ result: await Engine.cached() });
    } else if (op === 'delete') {
      reply({ result: await Engine.delete(data.url) });
    } else {
      throw new CandlelightError('invalid_request', `unknown operation ${op}`);
    }
  } catch (e) {
    reply({ error: wire(e) });
  } finally {
    controllers.delete(id);
  }
};
