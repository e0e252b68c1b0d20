// The engine inside the service worker, where it has WebGPU (Chromium exposes WebGPU to service
// workers): the local route answers with no page offering an engine, after the page that asked
// for it has closed, and after the service worker was stopped and started again; without WebGPU
// the service worker says so and the page keeps that job.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { completeThrough, configureRouter, launch, openWithRouter, startServer } from './harness.mjs';

const MODEL = '/models/tiny-qwen3-q4_k_m.gguf';
const ask = (content) => ({ model: 'local', messages: [{ role: 'user', content }], max_tokens: 8, stream: true });
const host = (page) => page.evaluate((url) => import('/pkg/index.js').then((m) => m.hostEngineInServiceWorker(url)), MODEL);
const text = (r) => r.chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');

test('with WebGPU in the service worker, the engine runs there: no page needed, and it comes back after a restart', async () => {
  const app = await startServer();
  const browser = await launch();
  try {
    const context = await browser.newContext();
    const first = await openWithRouter(await context.newPage(), app.origin);
    await configureRouter(first, { mode: 'local-only', providers: [] });
    const hosted = await host(first);
    assert.equal(hosted.ok, true, hosted.reason);
    assert.equal(hosted.backend, 'gpu');

    let r = await completeThrough(first, ask('Hello'));
    assert.equal(r.status, 200);
    assert.equal(r.route, 'local');
    assert.ok(r.done);
    assert.ok(r.chunks.at(-1).choices[0].finish_reason, 'a whole answer');
    assert.equal((await first.evaluate(() => import('/pkg/index.js').then((m) => m.Engine.cached()))).filter((f) => f.complete).length, 1, 'the model is in IndexedDB');

    // The page that asked goes away; another page, with no engine of its own, is still answered.
    await first.close();
    const second = await openWithRouter(await context.newPage(), app.origin);
    r = await completeThrough(second, ask('Still there?'));
    assert.equal(r.route, 'local');
    assert.ok(text(r).length > 0 || r.chunks.at(-1).choices[0].finish_reason);

    // The service worker is stopped (as the browser does when it idles) and starts again on
    // the next request: it loads the engine it hosted, from IndexedDB, and answers.
    const served = (await app.log()).length;
    const cdp = await context.newCDPSession(second);
    await cdp.send('ServiceWorker.enable');
    await cdp.send('ServiceWorker.stopAllWorkers');
    r = await completeThrough(second, { ...ask('After a restart'), stream: false });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal(r.route, 'local');
    assert.equal(r.json.object, 'chat.completion');
    assert.equal((await app.log()).slice(served).filter((l) => l.path.startsWith('/models/')).length, 0, 'no model bytes fetched again');
  } finally {
    await browser.close();
    await app.stop();
  }
});

test('without WebGPU the service worker declines to host an engine and says why', async () => {
  const app = await startServer();
  const browser = await launch({ webgpu: false });
  try {
    const page = await openWithRouter(await (await browser.newContext()).newPage(), app.origin);
    const hosted = await host(page);
    assert.equal(hosted.ok, false);
    assert.match(hosted.reason, /no WebGPU/);
  } finally {
    await browser.close();
    await app.stop();
  }
});
