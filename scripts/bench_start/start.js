// One cold page of scripts/bench_start.mjs: from this page's navigation through
// WorkerEngine.load (from IndexedDB when cached) to the first streamed token of a one-line chat.
// Times are ms since navigation start (performance.now()).
import { WorkerEngine } from '/pkg/index.js';

const params = new URLSearchParams(location.search);
const model = new URL(params.get('model'), location.href).href;
const threads = Number(params.get('threads') || 1);
const out = { model: params.get('model'), threads, isolated: crossOriginIsolated, marks: {} };
const mark = (name) => { out.marks[name] ??= Math.round(performance.now()); };
try {
  mark('imported');
  const engine = await WorkerEngine.load(model, {
    backend: 'cpu',
    threads,
    contextLength: 1024,
    onProgress: ({ phase, loaded, total }) => {
      mark(`${phase}_first`);
      if (loaded === total) mark(`${phase}_done`);
    },
  });
  mark('loaded');
  const stream = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'What color is the sky?' }],
    max_tokens: 4,
    temperature: 0,
    stream: true,
  });
  for await (const chunk of stream) {
    if (chunk.choices?.[0]?.delta?.content) {
      mark('first_token');
      break;
    }
  }
  out.size = engine.info.size;
  out.threads = engine.info.threads;
  engine.unload();
} catch (e) {
  out.error = String(e?.stack ?? e);
}
window.result = out;
