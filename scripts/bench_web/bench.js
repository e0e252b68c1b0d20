// One model file, two engines, one browser run: candlelight's CPU path (in its worker) and wllama
// (llama.cpp in wasm, single thread, no GPU). Greedy, a 128-token prompt, 128 decoded tokens.
// With `backend=gpu`, candlelight on WebGPU instead, and `peer=0` skips wllama.
import { WorkerEngine } from '/pkg/index.js';
import { Wllama } from '/node_modules/@wllama/wllama/esm/index.js';

const params = new URLSearchParams(location.search);
const model = new URL(params.get('model'), location.href).href;
const runs = Number(params.get('runs') || 3);
const log = (m) => { document.getElementById('log').textContent += m + '\n'; console.log(m); };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const PROMPT_TOKENS = Number(params.get('prompt') || 128);
const DECODE_TOKENS = Number(params.get('decode') || 128);
const backend = params.get('backend') || 'cpu';
// CPU threads for both engines: more than 1 needs a cross-origin isolated page (--isolate).
const threads = Number(params.get('threads') || 1);
// relaxed=0: candlelight's plain SIMD128 build even where the browser has relaxed SIMD.
const relaxedSimd = params.get('relaxed') !== '0';
const words = (n) => Array.from({ length: n }, (_, i) => ['river', 'stone', 'light', 'cloud', 'paper', 'green'][i % 6]).join(' ');
const request = (content, max_tokens) => ({ messages: [{ role: 'user', content }], max_tokens, temperature: 0, cache_prompt: false });

const out = { model: params.get('model') };
let text = '';
try {
  // candlelight
  let t0 = performance.now();
  const ours = await WorkerEngine.load(model, { contextLength: 1024, backend, threads, relaxedSimd });
  out.backend = ours.info.backend;
  out.threads = ours.info.threads;
  out.relaxed_simd = ours.info.relaxedSimd;
  out.isolated = crossOriginIsolated;
  out.ours_load_ms = performance.now() - t0;
  out.file_bytes = ours.info.size;
  out.ours_wasm_bytes_loaded = await ours.memoryBytes();
  // The user text whose chat prompt is exactly 128 tokens: the most words that fit, then short
  // fillers one at a time.
  const count = (content) => ours.countTokens(request(content, 1));
  let lo = 1;
  let hi = 400;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if ((await count(words(mid))) <= PROMPT_TOKENS) lo = mid;
    else hi = mid - 1;
  }
  text = words(lo);
  for (let guard = 0; guard < 64 && (await count(text)) < PROMPT_TOKENS; guard++) {
    const next = [' a', ' x', '.', ' 1'].map((s) => text + s);
    const sizes = await Promise.all(next.map(count));
    const i = sizes.findIndex((n) => n <= PROMPT_TOKENS);
    if (i < 0) break;
    text = next[i];
  }
  out.prompt_words = lo;
  const oursRuns = [];
  for (let i = 0; i <= runs; i++) {
    const r = await ours.chat.completions.create(request(text, DECODE_TOKENS));
    if (i > 0) oursRuns.push(r); // the first run warms up
  }
  out.ours = {
    prompt_tokens: oursRuns[0].timings.prefill_tokens,
    decode_tokens: oursRuns[0].usage.completion_tokens,
    prefill_tok_s: median(oursRuns.map((r) => r.timings.prefill_tokens_per_s)),
    decode_tok_s: median(oursRuns.map((r) => r.timings.decode_tokens_per_s)),
    text: oursRuns[0].choices[0].message.content.slice(0, 60),
  };
  // Where a decode step's time goes: the timed request again, streamed, timed per part inside
  // wasm from its first token on (the model takes the profile call between steps, so the
  // prefill is left out, and a real model decodes all DECODE_TOKENS of it, where a short
  // prompt would end at its EOS); the rest of a token's wall time is sampling, detokenizing and
  // the JS↔wasm and worker hops.
  const stream = await ours.chat.completions.create({ ...request(text, DECODE_TOKENS), stream: true });
  let timings = null;
  let profiling = false;
  for await (const chunk of stream) {
    if (!profiling) {
      await ours.profile(true);
      profiling = true;
    }
    timings = chunk.timings ?? timings;
  }
  out.ours_profile = { ...(await ours.profile()), wall_ms_per_token: timings.decode_ms / Math.max(1, timings.decode_tokens) };
  out.ours_wasm_bytes = await ours.memoryBytes();
  ours.unload();
  log(`candlelight: ${JSON.stringify(out.ours)}`);

  if (params.get('peer') !== '0') await runWllama();
} catch (e) {
  out.error = `${e.code ?? e.name}: ${e.message}`;
  log(out.error);
}
window.result = out;

async function runWllama() {
  const wllama = new Wllama({ default: '/node_modules/@wllama/wllama/esm/wasm/wllama.wasm' }, { logger: { debug() {}, log() {}, info() {}, warn: console.warn, error: console.error } });
  const t0 = performance.now();
  await wllama.loadModelFromUrl(model, { n_threads: threads, n_gpu_layers: 0, n_ctx: 1024, n_batch: 512 });
  out.wllama_load_ms = performance.now() - t0;
  const theirs = [];
  for (let i = 0; i <= runs; i++) {
    const r = await wllama.createChatCompletion({ ...request(text, DECODE_TOKENS), stream: false });
    if (i > 0) theirs.push(r);
  }
  out.wllama = {
    prompt_tokens: theirs[0].timings?.prompt_n,
    decode_tokens: theirs[0].usage?.completion_tokens,
    prefill_tok_s: median(theirs.map((r) => r.timings.prompt_per_second)),
    decode_tok_s: median(theirs.map((r) => r.timings.predicted_per_second)),
    text: theirs[0].choices[0].message.content.slice(0, 60),
  };
  log(`wllama: ${JSON.stringify(out.wllama)}`);
  await wllama.exit();
}
