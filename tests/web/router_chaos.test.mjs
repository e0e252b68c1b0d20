// Chaos through the real service worker (www/sw.js) in headless Chromium: 1 000 requests, 50 in
// flight at once, two thirds streamed, while three providers on 127.0.0.1 and the local route fail
// at random: busy, rate-limited, hanging, stalling, cutting the connection, sending garbage or an
// error event, ending without [DONE]. The local route is a page's engine offered to the worker
// over its MessagePort; its answers come from a fourth scripted server with the same faults, so
// the text of every answer is known. Every request is answered exactly once: a whole stream of
// the full text (nothing lost, nothing twice, one id, one role), a whole answer, a 503 with
// Retry-After, or a stream cut short whose last event says no route was left.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { configureRouter, launch, openWithRouter, startProvider, startServer } from './harness.mjs';

const REQUESTS = 1000;
const AT_ONCE = 50;
const SEED = Number(process.env.CHAOS_SEED ?? 1000);

let browser;
let app;
const servers = {};

// mulberry32: a small seeded generator, so a failing run can be replayed with CHAOS_SEED.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Half of all tries fail, each fault as likely as the others (scripts/provider.mjs's names). */
function fault(next) {
  const k = 1 + Math.floor(next() * 6);
  return ['503busy', '429', 'hang', `stall:${k}`, `cut:${k}`, `malformed:${k}`, `errorevent:${k}`, 'nodone'][Math.floor(next() * 16)] ?? 'none';
}

before(async () => {
  servers.p1 = await startProvider('p1', ['--keys', 'sk-a']);
  servers.p2 = await startProvider('p2');
  servers.p3 = await startProvider('p3');
  servers.page = await startProvider('page');
  const next = rng(SEED);
  for (const s of Object.values(servers)) await s.faults(Array.from({ length: 4 * REQUESTS }, () => fault(next)));
  app = await startServer();
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  await app?.stop();
  for (const s of Object.values(servers)) s.stop();
});

const WORDS = Array.from({ length: 8 }, (_, i) => `w${i} `).join('');

test(`${REQUESTS} requests under random faults on three providers and the local route are each answered once`, async () => {
  console.log(`chaos seed ${SEED} (CHAOS_SEED replays it)`);
  const page = await openWithRouter(await (await browser.newContext()).newPage(), app.origin);
  // The router's timings scaled down about twentyfold, as the providers' are: a fault costs
  // seconds, not minutes, and a circuit opened by three failures in a row closes again within
  // the run.
  const deadlines = { connectMs: 2000, firstByteMs: 1500, stallMs: 800 };
  const rate = { requestsPerS: 100, burst: 50, maxConcurrent: 16 };
  const provider = (name, keys, maxRetries) => ({ name, baseUrl: `${servers[name].origin}/v1`, keys, maxRetries, deadlines, rate });
  await configureRouter(page, {
    mode: 'local-first',
    retry: { baseMs: 50, capMs: 400, maxWaitMs: 2000 },
    breaker: { failures: 3, openMs: 1500 },
    providers: [provider('p1', [{ key: 'sk-bad' }, { key: 'sk-a' }], 2), provider('p2', [], 1), provider('p3', [], 0)],
    localDeadlines: deadlines,
    cacheBytes: 0,
  });
  // The page's engine: its answers come from the fourth server, faults and all.
  await page.evaluate(async (origin) => {
    const { offerLocalEngine } = await import('/pkg/index.js');
    const engine = {
      info: { id: 'page-engine', size: 1 },
      respond: (body, signal) => fetch(`${origin}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal }),
    };
    await offerLocalEngine(engine, { capable: true });
  }, servers.page.origin);

  const started = Date.now();
  const results = await page.evaluate(async ({ total, atOnce }) => {
    const out = new Array(total);
    let next = 0;
    async function one(n) {
      const stream = n % 3 !== 0;
      const body = { model: 'deepseek-chat', messages: [{ role: 'user', content: 'count' }], stream, temperature: 0.7, user: `u${n}`, ...(stream ? { stream_options: { include_usage: true } } : {}) };
      try {
        const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { stream, status: res.status, route: res.headers.get('x-candlelight-route'), retryAfter: res.headers.get('retry-after'), type: res.headers.get('content-type') ?? '', text: await res.text() };
      } catch (e) {
        return { stream, failed: String(e) };
      }
    }
    await Promise.all(Array.from({ length: atOnce }, async () => {
      while (next < total) {
        const n = next++;
        out[n] = await one(n);
      }
    }));
    return out;
  }, { total: REQUESTS, atOnce: AT_ONCE });
  const seconds = (Date.now() - started) / 1000;

  const counts = { streams: 0, wholes: 0, unavailable: 0, cutShort: 0, byRoute: {} };
  const why = new Map();
  results.forEach((r, n) => {
    assert.ok(r && !r.failed, `request ${n} was never answered: ${r?.failed}`);
    counts.byRoute[r.route ?? 'none'] = (counts.byRoute[r.route ?? 'none'] ?? 0) + 1;
    if (r.status === 503) {
      assert.ok(r.retryAfter, `request ${n}: 503 without Retry-After`);
      const { error } = JSON.parse(r.text);
      assert.equal(error.code, 'no_route_available', `request ${n}`);
      counts.unavailable++;
      why.set(error.message, (why.get(error.message) ?? 0) + 1);
      return;
    }
    assert.equal(r.status, 200, `request ${n}: ${r.text.slice(0, 300)}`);
    if (!r.stream) {
      assert.equal(JSON.parse(r.text).choices[0].message.content, WORDS, `request ${n}`);
      counts.wholes++;
      return;
    }
    assert.match(r.type, /event-stream/, `request ${n}`);
    const events = r.text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    const done = events.at(-1) === '[DONE]';
    assert.equal(events.filter((e) => e === '[DONE]').length, done ? 1 : 0, `request ${n}: one [DONE], last`);
    const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
    const answer = chunks.filter((c) => !c.error);
    assert.equal(new Set(answer.map((c) => c.id)).size, 1, `request ${n}: one stream id`);
    assert.equal(answer.filter((c) => c.choices[0]?.delta?.role).length, 1, `request ${n}: one role chunk`);
    const text = answer.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    if (done) {
      assert.equal(text, WORDS, `request ${n}: nothing lost, nothing twice`);
      assert.equal(chunks.filter((c) => c.error).length, 0, `request ${n}`);
      counts.streams++;
    } else {
      assert.equal(chunks.at(-1).error?.code, 'no_route_available', `request ${n}: ${JSON.stringify(chunks.at(-1))}`);
      assert.ok(WORDS.startsWith(text), `request ${n}: ${JSON.stringify(text)}`);
      counts.cutShort++;
    }
  });
  console.log(`chaos: ${REQUESTS} requests in ${seconds.toFixed(1)} s: ${JSON.stringify(counts)}`);
  const tries = (await Promise.all(Object.values(servers).map((s) => s.log()))).map((l) => l.length);
  console.log(`tries seen by p1, p2, p3, page: ${tries.join(', ')}`);
  for (const [message, times] of why) console.log(`503 ×${times}: ${message}`);
  const answered = counts.streams + counts.wholes;
  assert.equal(answered + counts.unavailable + counts.cutShort, REQUESTS);
  // Half of all tries fail, so some requests find no route left; most are still answered (the
  // loop fails over rather than gives up), and the local route and every provider answer some.
  assert.ok(answered * 5 > REQUESTS * 4, JSON.stringify(counts));
  for (const route of ['local', 'p1', 'p2', 'p3']) assert.ok(counts.byRoute[route] > 0, `${route} answered none: ${JSON.stringify(counts)}`);
  // local-first: every request tries the page's engine first, and 13 of 16 of those tries begin
  // an answer (all but busy, 429 and hang). When a try the router gave up on went on in the
  // page, its fetches held the browser's six connections to that server, and the local route
  // answered under a tenth of the requests.
  assert.ok(tries.at(-1) >= REQUESTS * 0.9, `the page's engine was tried ${tries.at(-1)} times`);
  assert.ok(counts.byRoute.local >= REQUESTS / 2, JSON.stringify(counts));

  // Every answer came from a try some server saw.
  assert.ok(tries.reduce((a, b) => a + b) >= answered);
});
