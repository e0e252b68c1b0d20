// Two tabs of one app download the same model at once, asking for different chunk sizes, and
// the server cuts the first download off mid-way. The tabs take turns on the file (a Web Lock):
// one verified file results, every stored chunk has the length, chunk size and generation of the
// file's record, and both tabs answer the same from it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, root, startServer } from './harness.mjs';

const MODEL = 'tiny-qwen3-q8_0.gguf';
const SHA256 = createHash('sha256').update(readFileSync(join(root, 'fixtures', MODEL))).digest('hex');

let browser;
let app;

before(async () => {
  app = await startServer();
  browser = await launch({ webgpu: false });
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('two tabs, two chunk sizes and a cut: one verified file, no chunk of the wrong size', async () => {
  const context = await browser.newContext();
  const [a, b] = [await context.newPage(), await context.newPage()];
  // A page of the origin that runs nothing of its own (the demo registers a service worker).
  for (const page of [a, b]) await page.goto(`${app.origin}/pkg/package.json`);
  const url = `${app.origin}/models/${MODEL}?t=two-tabs&cut=300000`;
  const load = (page, chunkSize) => page.evaluate(async ({ url, chunkSize, sha256 }) => {
    const { Engine } = await import('/pkg/index.js');
    const engine = await Engine.load(url, { backend: 'cpu', chunkSize, sha256, retries: 4 });
    const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 8 });
    return { text: r.choices[0].message.content, verified: engine.info.verified };
  }, { url, chunkSize, sha256: SHA256 });
  const [fromA, fromB] = await Promise.all([load(a, 65536), load(b, 131072)]);
  assert.ok(fromA.text.length > 0);
  assert.equal(fromB.text, fromA.text, 'both tabs answer alike from the one file');
  assert.ok(fromA.verified && fromB.verified);

  const stored = await a.evaluate(async (url) => {
    const db = await new Promise((resolve, reject) => { const r = indexedDB.open('candlelight'); r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
    const get = (store, query) => new Promise((resolve) => { const r = db.transaction(store).objectStore(store).getAll(query); r.onsuccess = () => resolve(r.result); });
    const [record] = await get('files', url);
    const chunks = [];
    await new Promise((resolve) => {
      const r = db.transaction('chunks').objectStore('chunks').openCursor(IDBKeyRange.bound([url, 0], [url, Infinity]));
      r.onsuccess = () => {
        const c = r.result;
        if (!c) return resolve();
        chunks.push({ index: c.key[1], bytes: c.value.data.size, len: c.value.len, chunkSize: c.value.chunkSize, generation: c.value.generation });
        c.continue();
      };
    });
    db.close();
    return { record, chunks };
  }, url);
  const { record, chunks } = stored;
  assert.ok(record.complete && record.verified, JSON.stringify(record));
  assert.equal(chunks.length, Math.ceil(record.size / record.chunkSize));
  for (const c of chunks) {
    const expected = Math.min(record.chunkSize, record.size - c.index * record.chunkSize);
    assert.equal(c.bytes, expected, `chunk ${c.index}`);
    assert.equal(c.len, expected);
    assert.equal(c.chunkSize, record.chunkSize);
    assert.equal(c.generation, record.generation);
  }
  const log = (await app.log()).filter((e) => e.url.includes('t=two-tabs'));
  assert.ok(log.some((e) => e.cut), 'the server cut a download off');
  await context.close();
});
