// The engine's dedicated worker: runs an `Engine` and answers worker-engine.js's requests
// (protocol.js), one port each.
import { Engine, errorResponse } from './engine.js';
import { CandlelightError } from './errors.js';
import { Op, sendResponse, serve } from './protocol.js';

let engine = null;

const loaded = () => {
  if (!engine) throw new CandlelightError('not_loaded', 'no model is loaded');
  return engine;
};

async function handle(data, { signal, emit }) {
  switch (data.op) {
    case Op.load:
      engine?.unload();
      engine = null;
      engine = await Engine.load(data.source, { ...data.options, signal, onProgress: (progress) => emit({ progress }) });
      return engine.info;
    case Op.create: {
      const out = await loaded().chat.completions.create({ ...data.body, signal });
      if (!data.body.stream) return { answer: out, info: engine.info };
      for await (const chunk of out) emit({ chunk });
      // `auto` may have moved to the CPU mid-answer: the page hears it with the answer.
      return { info: engine.info };
    }
    case Op.count:
      return loaded().countTokens(data.body);
    case Op.lose:
      return engine?.loseDevice() ?? false;
    case Op.memory:
      return loaded().memoryBytes();
    case Op.profile:
      return loaded().profile(data.on);
    case Op.cached:
      return Engine.cached();
    case Op.delete:
      return Engine.delete(data.url);
    case Op.checkForUpdate:
      return Engine.checkForUpdate(data.url, { hubMirrors: data.hubMirrors });
    default:
      throw new CandlelightError('invalid_request', `unknown operation ${data.op}`);
  }
}

self.onmessage = ({ data, ports: [port] }) => {
  if (data.op !== Op.respond) return serve(port, data, handle);
  // Not awaited: an abort from the page reaches an answer still waiting for its turn.
  const controller = new AbortController();
  const response = engine
    ? engine.respond(data.body, controller.signal)
    : errorResponse(new CandlelightError('not_loaded', 'no model is loaded'));
  sendResponse(port, response, controller);
};
