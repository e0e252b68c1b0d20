// The four builds: a WorkerEngine in a cross-origin isolated page (COOP/COEP, as
// `serve.mjs --isolate` and the demo send) computes on a pool of workers and answers with the
// same tokens as one thread and as the single-thread build, which a page without those headers
// gets, with no error and no app change. Chromium has relaxed SIMD, so each of those runs the
// relaxed build by default; `relaxedSimd: false` runs the plain one, with the same tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startServer } from './harness.mjs';

const MODEL = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const SKY = { messages: [{ role: 'user', content: 'What color is the sky on a clear day?' }], max_tokens: 24, temperature: 0 };

async function answer(browser, origin, threads, relaxedSimd) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
  // The browser asks for /favicon.ico, which the test server has not got; any other failed
  // load is a problem.
  page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`${r.status()} ${r.url()}`));
  page.on('pageerror', (e) => problems.push(String(e)));
  // Any document of the origin will do: its headers decide whether it is isolated.
  await page.goto(`${origin}/__log`);
  const r = await page.evaluate(async ({ model, request, threads, relaxedSimd }) => {
    const { WorkerEngine } = await import('/pkg/index.js');
    const options = { backend: 'cpu', contextLength: 256, ...(threads ? { threads } : {}), ...(relaxedSimd === undefined ? {} : { relaxedSimd }) };
    const engine = await WorkerEngine.load(model, options);
    await engine.profile(true);
    const out = await engine.chat.completions.create(request);
    const profile = await engine.profile();
    const info = engine.info;
    engine.unload();
    return { isolated: crossOriginIsolated, threads: info.threads, relaxedSimd: info.relaxedSimd, text: out.choices[0].message.content, profile, usage: out.usage };
  }, { model: MODEL, request: SKY, threads, relaxedSimd });
  await page.close();
  return { ...r, problems };
}

test('isolated pages compute on a worker pool with the tokens of one thread; other pages get the single-thread build; relaxed SIMD or not, the same tokens', async () => {
  const isolated = await startServer(['--isolate']);
  const plain = await startServer();
  const browser = await launch({ webgpu: false });
  try {
    const two = await answer(browser, isolated.origin, 2);
    assert.equal(two.isolated, true);
    assert.equal(two.threads, 2, 'the threaded build, with the threads asked for');
    assert.equal(two.relaxedSimd, true, 'Chromium validates relaxed SIMD: the relaxed threaded build');
    assert.match(two.text, /blue/, 'a real answer');
    // The step profile counted the prompt's step and one per later token, and timed them.
    const { profile, usage } = two;
    assert.equal(profile.steps, usage.completion_tokens, JSON.stringify(profile));
    assert.ok(profile.matmulMs > 0 && profile.headMs > 0, JSON.stringify(profile));
    for (const k of ['matmulMs', 'attentionMs', 'normsMs', 'otherMs', 'headMs']) assert.ok(Number.isFinite(profile[k]) && profile[k] >= 0, k);

    const one = await answer(browser, isolated.origin, 1);
    assert.equal(one.threads, 1);
    assert.equal(one.text, two.text, 'one thread and two give the same tokens');

    const twoPlain = await answer(browser, isolated.origin, 2, false);
    assert.deepEqual([twoPlain.threads, twoPlain.relaxedSimd], [2, false], 'the plain threaded build');
    assert.equal(twoPlain.text, two.text, 'relaxed SIMD or not, the same tokens at 2 threads');

    const single = await answer(browser, plain.origin);
    assert.equal(single.isolated, false);
    assert.equal(single.threads, 1, 'no COOP/COEP: the single-thread build');
    assert.equal(single.relaxedSimd, true, 'the relaxed single-thread build');
    assert.equal(single.text, two.text, 'the single-thread build gives the same tokens');
    assert.deepEqual(single.problems, [], 'and no error or warning on the way');

    const singlePlain = await answer(browser, plain.origin, undefined, false);
    assert.deepEqual([singlePlain.threads, singlePlain.relaxedSimd], [1, false], 'the plain single-thread build');
    assert.equal(singlePlain.text, two.text, 'relaxed SIMD or not, the same tokens on one thread');
    assert.deepEqual(singlePlain.problems, [], 'and no error or warning on the way');
  } finally {
    await browser.close();
    await isolated.stop();
    await plain.stop();
  }
});

test('on a host that sends no COOP/COEP, the service worker adds them: from the second visit the page is isolated and runs threads', async () => {
  const plain = await startServer();
  const browser = await launch({ webgpu: false });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(`${plain.origin}/offline.html`);
    const first = await page.evaluate(async () => {
      await navigator.serviceWorker.register('/sw.js', { type: 'module' });
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
      return crossOriginIsolated;
    });
    assert.equal(first, false, 'the first visit came from the server, with no headers');
    const response = await page.reload();
    assert.equal(response.headers()['cross-origin-embedder-policy'], 'require-corp');
    assert.equal(response.headers()['cross-origin-opener-policy'], 'same-origin');
    const second = await page.evaluate(async ({ model, request }) => {
      const { WorkerEngine } = await import('/pkg/index.js');
      const engine = await WorkerEngine.load(model, { backend: 'cpu', contextLength: 256, threads: 2 });
      const out = await engine.chat.completions.create(request);
      const { threads } = engine.info;
      engine.unload();
      return { isolated: crossOriginIsolated, controlled: !!navigator.serviceWorker.controller, threads, text: out.choices[0].message.content };
    }, { model: MODEL, request: SKY });
    assert.deepEqual([second.isolated, second.controlled, second.threads], [true, true, 2], JSON.stringify(second));
    assert.match(second.text, /blue/);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    await plain.stop();
  }
});
