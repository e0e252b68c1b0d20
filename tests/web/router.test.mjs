// The router in its service worker (www/sw.js), in headless Chromium, against two providers on
// 127.0.0.1 that answer as DeepSeek's API does and fail on command (scripts/provider.mjs): every
// request the page makes goes through the service worker to the right route; retries, key
// rotation, failover before the first byte and mid-stream (one continuous stream), the 503 when
// nothing can answer, and /v1/metrics read by a real Prometheus text-format parser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { completeThrough, configureRouter, launch, openWithRouter, startProvider, startServer } from './harness.mjs';

let browser;
let app;
let page;
const providers = {};

const fast = { connectMs: 2000, firstByteMs: 800, stallMs: 400 };
const config = (over = {}) => ({
  mode: 'remote-only',
  retry: { baseMs: 50, capMs: 200, maxWaitMs: 3000 },
  providers: [
    { name: 'p1', baseUrl: `${providers.p1.origin}/v1`, keys: [{ key: 'sk-bad' }, { key: 'sk-a' }], maxRetries: 2, deadlines: fast },
    { name: 'p2', baseUrl: `${providers.p2.origin}/v1`, maxRetries: 0, deadlines: fast },
  ],
  ...over,
});

const configure = (c) => configureRouter(page, c);
const complete = (body) => completeThrough(page, body);

const ask = (over = {}) => ({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'count' }], stream: true, stream_options: { include_usage: true }, ...over });
const words = (n) => Array.from({ length: n }, (_, i) => `w${i} `).join('');
const textOf = (r) => r.chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

const openRouterPage = async (b) => openWithRouter(await (await b.newContext()).newPage(), app.origin);

before(async () => {
  providers.p1 = await startProvider('p1', ['--keys', 'sk-a']);
  providers.p2 = await startProvider('p2');
  app = await startServer();
  browser = await launch();
  page = await openRouterPage(browser);
  await configure(config());
});

after(async () => {
  await browser?.close();
  await app?.stop();
  for (const p of Object.values(providers)) p.child.kill();
});

test('a refused key rotates to the next, and the stream arrives whole', async () => {
  const before = (await providers.p1.log()).length;
  const r = await complete(ask());
  assert.equal(r.status, 200);
  assert.equal(r.route, 'p1');
  assert.ok(r.done);
  assert.equal(textOf(r), words(8));
  assert.equal(r.chunks.at(-1).usage.completion_tokens, 8);
  const log = (await providers.p1.log()).slice(before);
  assert.deepEqual(log.map((l) => l.auth), ['sk-bad', 'sk-a'], 'the 401 key, then the next key');
  // The ring remembers: the refused key is not tried again.
  const again = (await providers.p1.log()).length;
  await complete(ask());
  assert.deepEqual((await providers.p1.log()).slice(again).map((l) => l.auth), ['sk-a']);
});

test('429 with Retry-After and 503 server busy are retried on the same provider', async () => {
  await providers.p1.faults(['429', '503busy']);
  const t0 = Date.now();
  const r = await complete(ask());
  assert.equal(r.route, 'p1');
  assert.equal(textOf(r), words(8));
  assert.ok(Date.now() - t0 >= 1000, 'Retry-After: 1 was honoured');
  const log = (await providers.p1.log()).slice(-3);
  assert.deepEqual(log.map((l) => l.fault), ['429', '503busy', null]);
});

test('busy past its retries, or silent before the first byte, fails over to the next provider', async () => {
  await providers.p1.faults(['503busy', '503busy', '503busy']);
  let r = await complete(ask());
  assert.equal(r.route, 'p2');
  assert.equal(textOf(r), words(8));
  await configure(config()); // a fresh breaker for the next case
  await providers.p1.faults(['hang', 'hang', 'hang']);
  r = await complete(ask());
  assert.equal(r.route, 'p2', 'no first byte within 800 ms');
  assert.equal(textOf(r), words(8));
  await configure(config());
});

for (const fault of ['stall:3', 'cut:3', 'malformed:3']) {
  test(`a stream that breaks mid-way (${fault}) continues on the next provider as one stream`, async () => {
    await providers.p1.faults([fault]);
    const before2 = (await providers.p2.log()).length;
    const r = await complete(ask());
    assert.equal(r.status, 200);
    assert.ok(r.done, 'ends with [DONE]');
    assert.equal(textOf(r), words(8), 'nothing lost, nothing twice');
    assert.equal(new Set(r.chunks.map((c) => c.id)).size, 1, 'one stream id');
    assert.equal(r.chunks.filter((c) => c.choices[0]?.delta?.role).length, 1, 'one role chunk');
    const cont = (await providers.p2.log()).slice(before2);
    assert.equal(cont.length, 1);
    assert.deepEqual(cont[0].body.messages.at(-1), { role: 'assistant', content: words(3), prefix: true });
    assert.equal(r.chunks.at(-1).usage.completion_tokens, 8, 'usage counts the tokens before the break');
    await configure(config());
  });
}

test('a whole (non-streamed) answer and a client error pass through', async () => {
  const r = await complete(ask({ stream: false }));
  assert.equal(r.status, 200);
  assert.equal(r.json.choices[0].message.content, words(8));
  const bad = await page.evaluate(async () => (await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'not json' })).status);
  assert.equal(bad, 400);
});

test('another site\'s form post, a body that is not JSON and an oversized body are refused before any provider sees them', async () => {
  await configure(config());
  const seen = async () => (await providers.p1.log()).length + (await providers.p2.log()).length;
  const before = await seen();
  // Another origin (localhost is not 127.0.0.1) posts a text/plain form to the router: the
  // navigation reaches the service worker, which must not spend the key on it.
  const evil = await startServer();
  const other = await (await browser.newContext()).newPage();
  try {
    await openWithRouter(other, app.origin);
    await configureRouter(other, config());
    await other.goto(`http://localhost:${evil.port}/`);
    await other.setContent(`<form method="post" enctype="text/plain" action="${app.origin}/v1/chat/completions">
      <input name='{"model":"deepseek-chat","messages":[{"role":"user","content":"spend","x":"' value='"}]}'></form>`);
    const [response] = await Promise.all([other.waitForNavigation(), other.evaluate(() => document.forms[0].submit())]);
    assert.equal(response.status(), 403);
    assert.equal(JSON.parse(await response.text()).error.code, 'navigation_refused');
  } finally {
    await other.context().close();
    await evil.stop();
  }
  const statuses = await page.evaluate(async () => {
    const post = (init) => fetch('/v1/chat/completions', { method: 'POST', ...init }).then(async (r) => [r.status, (await r.json()).error?.code]);
    const body = JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'x' }] });
    return [
      await post({ body }),
      await post({ headers: { 'content-type': 'text/plain' }, body }),
      await post({ headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'x'.repeat(9 << 20) }] }) }),
    ];
  });
  assert.deepEqual(statuses, [[415, 'unsupported_media_type'], [415, 'unsupported_media_type'], [413, 'request_too_large']]);
  assert.equal(await seen(), before, 'no provider saw any of them');
});

test('identical deterministic requests in flight go out once; cached answers are served when every route fails', async () => {
  await configure(config());
  const det = ask({ temperature: 0, messages: [{ role: 'user', content: 'keep this' }] });
  const first = await complete(det);
  assert.equal(first.route, 'p1');

  // The leader meets a 429 (Retry-After: 1), so the other two join while it waits.
  await providers.p1.faults(['429']);
  const before = (await providers.p1.log()).length;
  const same = ask({ temperature: 0, messages: [{ role: 'user', content: 'together' }] });
  const trio = await Promise.all([complete(same), complete(same), complete({ ...same, stream: false })]);
  const sent = (await providers.p1.log()).slice(before);
  assert.deepEqual(sent.map((l) => l.fault), ['429', null], 'one request went out (and its one retry)');
  assert.equal(textOf(trio[0]), words(8));
  assert.equal(textOf(trio[1]), words(8));
  assert.ok(trio[1].done);
  assert.equal(trio[2].json.choices[0].message.content, words(8), 'a whole answer from the streamed one');
  assert.deepEqual(trio.map((r) => r.route), ['p1', 'p1', 'p1']);

  // Nothing can answer now: the cached answer comes back, streamed or whole; a sampled request gets the 503.
  // The same providers and models, unreachable (answers cached under other models are not served).
  await configure(config({ providers: config().providers.map((p) => ({ ...p, baseUrl: `http://127.0.0.1:9/${p.name}/v1`, maxRetries: 0 })) }));
  const kept = await complete(det);
  assert.equal(kept.status, 200);
  assert.equal(kept.route, 'cache');
  assert.ok(kept.done);
  assert.equal(textOf(kept), textOf(first), 'the same answer');
  assert.equal(kept.chunks.filter((c) => c.choices[0]?.delta?.role).length, 1);
  assert.equal(kept.chunks.at(-1).usage.completion_tokens, 8);
  const whole = await complete({ ...det, stream: false });
  assert.equal(whole.route, 'cache');
  assert.equal(whole.json.choices[0].message.content, textOf(first));
  const sampled = await complete(ask({ messages: [{ role: 'user', content: 'keep this' }] }));
  assert.equal(sampled.status, 503, 'a sample is never replayed');
  const families = Object.fromEntries(parsePrometheusTextFormat(await page.evaluate(async () => (await fetch('/v1/metrics')).text())).map((f) => [f.name, f]));
  assert.equal(Number(families.candlelight_cache_total.metrics.find((m) => m.labels.event === 'served').value), 2);
  await configure(config());
});

test('with every provider down and no local model the 503 arrives with Retry-After, and the page hears "down"', async () => {
  await configure(config({ providers: [{ name: 'gone', baseUrl: 'http://127.0.0.1:9/v1', maxRetries: 0, deadlines: fast }], breaker: { failures: 1, openMs: 30000 } }));
  await page.evaluate(() => {
    window.health = [];
    navigator.serviceWorker.addEventListener('message', (e) => e.data?.type === 'candlelight-health' && window.health.push(e.data.level));
  });
  const r = await complete(ask());
  assert.equal(r.status, 503);
  assert.equal(r.route, 'none');
  assert.ok(Number(r.retryAfter) >= 1);
  assert.equal(r.json.error.type, 'server_busy');
  assert.equal(r.json.error.code, 'no_route_available');
  await page.waitForFunction(() => window.health.includes('down'), null, { timeout: 5000 });
  await configure(config());
});

test('/v1/metrics parses as Prometheus text and counts what happened', async () => {
  await configure(config());
  await complete(ask());
  await providers.p1.faults(['503busy', '503busy', '503busy']);
  await complete(ask());
  const text = await page.evaluate(async () => (await fetch('/v1/metrics')).text());
  const families = Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const count = (fam, labels) => families[fam].metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels[k] === v)).reduce((s, m) => s + Number(m.value), 0);
  assert.equal(count('candlelight_requests_total', { route: 'p1', outcome: 'ok' }), 1);
  assert.equal(count('candlelight_requests_total', { route: 'p1', outcome: 'busy' }), 3);
  assert.equal(count('candlelight_requests_total', { route: 'p2', outcome: 'ok' }), 1);
  assert.equal(count('candlelight_failovers_total', { from: 'p1', reason: 'busy' }), 1);
  assert.equal(count('candlelight_tokens_total', { route: 'p1', kind: 'completion' }), 8);
  assert.equal(families.candlelight_request_duration_seconds.type, 'HISTOGRAM');
  const models = await page.evaluate(async () => (await fetch('/v1/models')).json());
  assert.equal(models.object, 'list');
});

test('the local route: the page offers its engine; local-first answers on the device, auto on a weak one answers remote and falls back local when the remote is busy', async () => {
  const model = `${app.origin}/models/tiny-qwen3-q8_0.gguf`;
  const offered = await page.evaluate(async (model) => {
    const { WorkerEngine, offerLocalEngine } = await import('/pkg/index.js');
    window.engine = await WorkerEngine.load(model, { backend: 'cpu' });
    return offerLocalEngine(window.engine, { capable: false });
  }, model);
  assert.equal(offered.verdict, 'tooWeak');
  await configure(config({ mode: 'local-first' }));
  // Greedy, so the length is the same every run (sampled, an end token can come early).
  let r = await complete(ask({ max_tokens: 12, temperature: 0 }));
  assert.equal(r.status, 200);
  assert.equal(r.route, 'local');
  assert.ok(r.done);
  assert.equal(r.chunks.at(-1).usage.completion_tokens, 12);
  assert.match(r.chunks[0].model, /tiny-qwen3/);

  // auto with a device marked too weak: the remote first.
  await configure(config({ mode: 'auto' }));
  r = await complete(ask());
  assert.equal(r.route, 'p1');
  // Every remote busy: the slow local model still answers.
  await providers.p1.faults(['503busy', '503busy', '503busy']);
  await providers.p2.faults(['503busy']);
  r = await complete(ask({ max_tokens: 6, temperature: 0 }));
  assert.equal(r.route, 'local');
  assert.equal(r.chunks.at(-1).usage.completion_tokens, 6);
  const models = await page.evaluate(async () => (await fetch('/v1/models')).json());
  assert.ok(models.data.some((m) => m.owned_by === 'local'));
  await configure(config());
});

test('offering again swaps the engine rather than answering twice, and unoffering hands the route back', async () => {
  await configure(config({ mode: 'local-first' }));
  const out = await page.evaluate(async () => {
    const { offerLocalEngine, unofferLocalEngine } = await import('/pkg/index.js');
    const calls = [];
    const fake = (name) => ({
      info: { id: name, size: 1 },
      respond: async () => {
        calls.push(name);
        return new Response(JSON.stringify({ id: name, object: 'chat.completion', created: 1, model: name,
          choices: [{ index: 0, message: { role: 'assistant', content: `from ${name}` }, finish_reason: 'stop' }] }), { headers: { 'content-type': 'application/json' } });
      },
    });
    for (const name of ['a', 'b', 'c']) await offerLocalEngine(fake(name), { capable: true });
    const ask = async () => {
      const r = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hi' }] }) });
      return [r.headers.get('x-candlelight-route'), (await r.json()).choices[0].message.content];
    };
    const first = await ask();
    const answered = [...calls];
    await unofferLocalEngine();
    const second = await ask();
    return { first, answered, second, calls: calls.length };
  });
  assert.deepEqual(out.first, ['local', 'from c']);
  assert.deepEqual(out.answered, ['c'], 'one answer, from the engine offered last');
  assert.equal(out.second[0], 'p1', 'withdrawn: the provider answers');
  assert.equal(out.calls, 1);
});

test('an engine still starting its answer is stopped when the router gives up on it, and the provider answers', async () => {
  await configure(config({ mode: 'local-first', localDeadlines: fast }));
  const out = await page.evaluate(async () => {
    const { offerLocalEngine, unofferLocalEngine } = await import('/pkg/index.js');
    // An engine that never gets to its answer's head (waiting for its turn, or generating a
    // whole answer) until it is told to stop.
    const stopped = [];
    await offerLocalEngine({
      info: { id: 'slow', size: 1 },
      respond: (body, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => {
        stopped.push(Date.now());
        reject(new DOMException('stopped', 'AbortError'));
      })),
    }, { capable: true });
    const asked = Date.now();
    const r = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hi' }] }) });
    const route = r.headers.get('x-candlelight-route');
    await r.json();
    await new Promise((resolve) => setTimeout(resolve, 500));
    await unofferLocalEngine();
    return { route, stoppedAfter: stopped.map((t) => t - asked) };
  });
  assert.equal(out.route, 'p1', 'the local route went silent and the provider answered');
  // The first-byte deadline is 800 ms; the engine hears of it once, soon after.
  assert.equal(out.stoppedAfter.length, 1, JSON.stringify(out));
  assert.ok(out.stoppedAfter[0] >= 700 && out.stoppedAfter[0] < 3000, JSON.stringify(out));
  await configure(config());
});

test('a page answering for a service worker that went away stops within seconds, started or not; a live one goes on', async () => {
  const out = await page.evaluate(async () => {
    const { sendResponse, receiveResponse, HEARTBEAT_MS } = await import('/pkg/protocol.js');
    // An endless answer, as an engine generating into a port; it ends when aborted.
    const answer = (controller) => new Response(new ReadableStream({
      pull: (c) => new Promise((r) => setTimeout(() => {
        if (controller.signal.aborted) c.close(); else c.enqueue(new TextEncoder().encode('x'));
        r();
      }, 50)),
    }));
    const dead = new MessageChannel();
    const live = new MessageChannel();
    // An engine still waiting for its turn: no head yet, and nobody left to read it.
    const pending = new MessageChannel();
    const deadStop = new AbortController();
    const liveStop = new AbortController();
    const pendingStop = new AbortController();
    const started = Date.now();
    sendResponse(dead.port1, answer(deadStop), deadStop);
    sendResponse(live.port1, answer(liveStop), liveStop);
    sendResponse(pending.port1, new Promise((resolve) => pendingStop.signal.addEventListener('abort', () => resolve(answer(pendingStop)))), pendingStop);
    const received = await receiveResponse(live.port2);
    const reader = received.body.getReader();
    await new Promise((r) => deadStop.signal.addEventListener('abort', r));
    const stoppedAfter = Date.now() - started;
    // Its watch started a moment after the dead one's: it stops within a beat of it.
    const pendingStopped = pendingStop.signal.aborted || await new Promise((r) => {
      pendingStop.signal.addEventListener('abort', () => r(true));
      setTimeout(() => r(false), HEARTBEAT_MS);
    });
    await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_MS));
    const liveGoesOn = !liveStop.signal.aborted && !(await reader.read()).done;
    reader.cancel();
    return { stoppedAfter, pendingStopped, liveGoesOn, beat: HEARTBEAT_MS };
  });
  assert.ok(out.stoppedAfter >= 5 * out.beat && out.stoppedAfter < 10 * out.beat, `stopped after ${out.stoppedAfter} ms`);
  assert.ok(out.pendingStopped, 'an answer that had not started is stopped as well');
  assert.ok(out.liveGoesOn, 'the answer with a live reader was not stopped');
});

test('provider keys are sealed at rest: no cache, IndexedDB record or page storage holds them, and a restarted worker still sends them', async () => {
  await configure(config());
  const found = await page.evaluate(async () => {
    const text = (v) => {
      if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return new TextDecoder().decode(v);
      if (v && typeof v === 'object' && !(v instanceof CryptoKey)) return Object.values(v).map(text).join(' ');
      return String(v);
    };
    const places = [];
    for (const name of await caches.keys()) {
      const cache = await caches.open(name);
      for (const req of await cache.keys()) if ((await (await cache.match(req)).text()).includes('sk-a')) places.push(`cache ${req.url}`);
    }
    for (const { name } of await indexedDB.databases()) {
      const db = await new Promise((resolve, reject) => { const r = indexedDB.open(name); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
      for (const store of db.objectStoreNames) {
        const all = await new Promise((resolve) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => resolve(r.result); });
        if (all.some((v) => text(v).includes('sk-a'))) places.push(`indexedDB ${name}/${store}`);
      }
      db.close();
    }
    if (JSON.stringify(localStorage).includes('sk-a')) places.push('localStorage');
    return places;
  });
  assert.deepEqual(found, []);
  // A restarted worker opens the sealed configuration and sends the key.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('ServiceWorker.enable');
  await cdp.send('ServiceWorker.stopAllWorkers');
  const before = (await providers.p1.log()).length;
  const r = await complete(ask());
  assert.equal(r.route, 'p1');
  assert.deepEqual((await providers.p1.log()).slice(before).map((l) => l.auth), ['sk-bad', 'sk-a']);
  // keepKeys: a new configuration that does not carry the keys keeps them.
  const held = await page.evaluate(async (c) => {
    const { configureRouter } = await import('/pkg/index.js');
    return configureRouter(c);
  }, config({ providers: config().providers.map(({ keys, ...p }) => ({ ...p, keepKeys: true })) }));
  assert.deepEqual(held.providers.map((p) => p.keys), [2, 0]);
  const again = await complete(ask());
  assert.equal(again.route, 'p1');
  assert.equal((await providers.p1.log()).at(-1).auth, 'sk-a');
});

test('a frame of the origin cannot reconfigure the router or claim the local route', async () => {
  await configure(config());
  const replies = await page.evaluate(async () => {
    const frame = document.createElement('iframe');
    frame.src = '/?framed';
    document.body.append(frame);
    await new Promise((r) => { frame.onload = r; });
    const w = frame.contentWindow;
    const sw = (await w.navigator.serviceWorker.ready).active;
    const ask = (message) => new Promise((resolve) => {
      const { port1, port2 } = new w.MessageChannel();
      port1.onmessage = (e) => resolve(e.data.error?.code ?? 'accepted');
      sw.postMessage(message, [port2]);
    });
    const out = [
      await ask({ type: 'router-config', config: { mode: 'remote-only', providers: [{ name: 'evil', baseUrl: 'https://evil.example/v1' }] } }),
      await ask({ type: 'local-engine', ready: true, capable: true, model: 'evil' }),
    ];
    frame.remove();
    return out;
  });
  assert.deepEqual(replies, ['forbidden', 'forbidden']);
  const r = await complete(ask());
  assert.equal(r.route, 'p1', 'the configuration stands');
});

test('a provider that redirects is not followed: the key stays with the provider it belongs to', async () => {
  await configure(config());
  await providers.p1.faults([`redirect=${providers.p2.origin}/v1/chat/completions`]);
  const before = (await providers.p2.log()).length;
  const r = await complete(ask());
  assert.equal(r.status, 200);
  assert.equal(r.route, 'p1', 'a retry on p1 answers');
  assert.equal((await providers.p2.log()).length, before, 'nothing reached the redirect target');
});

test('the official openai client works through the service worker, streaming and not', async () => {
  await configure(config());
  const r = await page.evaluate(async () => {
    const { default: OpenAI } = await import('/node_modules/openai/index.mjs');
    const client = new OpenAI({ baseURL: `${location.origin}/v1`, apiKey: 'not-used-by-the-router', dangerouslyAllowBrowser: true, maxRetries: 0 });
    const whole = await client.chat.completions.create({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'count' }] });
    const stream = await client.chat.completions.create({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'count' }], stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      usage = chunk.usage ?? usage;
    }
    return { whole: whole.choices[0].message.content, wholeUsage: whole.usage.completion_tokens, text, usage: usage?.completion_tokens };
  });
  assert.deepEqual(r, { whole: words(8), wholeUsage: 8, text: words(8), usage: 8 });
});

test('with WebGPU off and a high minimum speed the probe says too weak and auto routes remote', async () => {
  const noGpu = await launch({ webgpu: false });
  const main = page;
  try {
    page = await openRouterPage(noGpu);
    await configure(config({ mode: 'auto' }));
    const model = `${app.origin}/models/tiny-qwen3-q8_0.gguf`;
    const verdicts = await page.evaluate(async (model) => {
      const { WorkerEngine, offerLocalEngine } = await import('/pkg/index.js');
      window.engine = await WorkerEngine.load(model, { backend: 'cpu' });
      const high = await offerLocalEngine(window.engine, { minTokensPerS: 1e9 });
      return { high };
    }, model);
    const { high } = verdicts;
    assert.equal(high.verdict, 'tooWeak');
    assert.match(high.reason, /^speed: about [\d.e+]+ tok\/s on the cpu/);
    assert.equal(high.profile.webgpu, null, 'no WebGPU in this browser');
    assert.ok(high.profile.cpuBytesPerS > 1e8, `measured CPU bandwidth ${high.profile.cpuBytesPerS}`);
    let r = await complete(ask());
    assert.equal(r.route, 'p1', 'too weak: the remote answers');
    const low = await page.evaluate(async () => {
      const { offerLocalEngine } = await import('/pkg/index.js');
      return offerLocalEngine(window.engine, { minTokensPerS: 0.001 });
    });
    assert.equal(low.verdict, 'capable');
    assert.equal(low.backend, 'cpu');
    r = await complete(ask({ max_tokens: 4, temperature: 0 }));
    assert.equal(r.route, 'local', 'capable: the device answers first');
  } finally {
    page = main;
    await noGpu.close();
  }
});

test('a page closed mid-answer does not leave the stream hanging: it continues on a provider', async () => {
  const model = `${app.origin}/models/tiny-qwen3-q8_0.gguf`;
  const server = await page.context().newPage();
  await server.goto(`${app.origin}/`);
  await server.evaluate(async (model) => {
    await navigator.serviceWorker.ready;
    const { WorkerEngine, offerLocalEngine } = await import('/pkg/index.js');
    window.engine = await WorkerEngine.load(model, { backend: 'cpu' });
    await offerLocalEngine(window.engine, { capable: true });
  }, model);
  await configure(config({ mode: 'local-first', localDeadlines: { connectMs: 5000, firstByteMs: 20000, stallMs: 1500 } }));
  // The asking page reads the stream; the page with the engine closes after the first tokens.
  const reading = page.evaluate(async () => {
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'go' }], stream: true, max_tokens: 400, temperature: 0 }) });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value);
      if (!window.firstSeen && text.includes('"content"')) window.firstSeen = true;
    }
    return { route: res.headers.get('x-candlelight-route'), events: text.split('\n\n').filter(Boolean) };
  });
  await page.waitForFunction(() => window.firstSeen, null, { timeout: 20000, polling: 10 });
  const before = (await providers.p1.log()).length;
  await server.close();
  const t0 = Date.now();
  const r = await reading;
  assert.equal(r.route, 'local', `it started on the device: ${JSON.stringify((await providers.p1.log()).slice(before).map((l) => l.body.messages))}`);
  assert.equal(r.events.at(-1), 'data: [DONE]', 'the stream ended properly');
  assert.ok(Date.now() - t0 < 15000, 'within the stall deadline, not hanging');
  // (A fresh router tries the refused key once first.)
  const cont = (await providers.p1.log()).slice(before).filter((l) => l.auth === 'sk-a');
  assert.equal(cont.length, 1, 'the rest came from the provider');
  assert.equal(cont[0].body.messages.at(-1).prefix, true);
  assert.equal(new Set(r.events.slice(0, -1).map((e) => JSON.parse(e.slice(6)).id)).size, 1, 'one stream');
  await configure(config());
});
