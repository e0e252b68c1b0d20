// The threaded build: a WorkerEngine in a cross-origin isolated page (COOP/COEP, as
// `serve.mjs --isolate` and the demo send) computes on a pool of workers and answers with the
// same tokens as one thread and as the single-thread build, which a page without those headers
// gets, with no error and no app change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startServer } from './harness.mjs';

const MODEL = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const SKY = { messages: [{ role: 'user', content: 'What color is the sky on a clear day?' }], max_tokens: 24, temperature: 0 };

async function answer(browser, origin, threads) {
  const page = await browser.newPage();
  const problems = [];
  page.on('console', (m) => ['error', 'warning'].includes(m.type()) && !m.text().startsWith('Failed to load resource') && problems.push(m.text()));
  // The browser asks for /favicon.ico, which the test server has not got; any other failed
  // load is a problem.
  page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`${r.status()} ${r.url()}`));
  page.on('pageerror', (e) => problems.push(String(e)));
  // Any document of the origin will do: its headers decide whether it is isolated.
  await page.goto(`${origin}/__log`);
  const r = await page.evaluate(async ({ model, request, threads }) => {
    const { WorkerEngine } = await import('/pkg/index.js');
    const engine = await WorkerEngine.load(model, { backend: 'cpu', contextLength: 256, ...(threads ? { threads } : {}) });
    await engine.profile(true);
    const out = await engine.chat.completions.create(request);
    const profile = await engine.profile();
    const info = engine.info;
    engine.unload();
    return { isolated: crossOriginIsolated, threads: info.threads, text: out.choices[0].message.content, profile, usage: out.usage };
  }, { model: MODEL, request: SKY, threads });
  await page.close();
  return { ...r, problems };
}

test('isolated pages compute on a worker pool with the tokens of one thread; other pages get the single-thread build', async () => {
  const isolated = await startServer(['--isolate']);
  const plain = await startServer();
  const browser = await launch({ webgpu: false });
  try {
    const two = await answer(browser, isolated.origin, 2);
    assert.equal(two.isolated, true);
    assert.equal(two.threads, 2, 'the threaded build, with the threads asked for');
    assert.match(two.text, /blue/, 'a real answer');
    // The step profile counted the prompt's step and one per later token, and timed them.
    const { profile, usage } = two;
    assert.equal(profile.steps, usage.completion_tokens, JSON.stringify(profile));
    assert.ok(profile.matmulMs > 0 && profile.headMs > 0, JSON.stringify(profile));
    for (const k of ['matmulMs', 'attentionMs', 'normsMs', 'otherMs', 'headMs']) assert.ok(Number.isFinite(profile[k]) && profile[k] >= 0, k);

    const one = await answer(browser, isolated.origin, 1);
    assert.equal(one.threads, 1);
    assert.equal(one.text, two.text, 'one thread and two give the same tokens');

    const single = await answer(browser, plain.origin);
    assert.equal(single.isolated, false);
    assert.equal(single.threads, 1, 'no COOP/COEP: the single-thread build');
    assert.equal(single.text, two.text, 'the single-thread build gives the same tokens');
    assert.deepEqual(single.problems, [], 'and no error or warning on the way');
  } finally {
    await browser.close();
    await isolated.stop();
    await plain.stop();
  }
});
