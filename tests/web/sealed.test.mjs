// Sealed model files in Chromium (store/sealed.rs, examples/encrypt): the tiny Qwen3 sealed
// under a test key loads from a URL with `decryptionKey` (its bytes, or a non-extractable
// CryptoKey handed to a WorkerEngine) and answers with exactly the plain file's tokens; a wrong
// key is `decryption_failed`, and IndexedDB keeps nothing of that file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, startServer } from './harness.mjs';

let browser;
let app;
let page;

before(async () => {
  app = await startServer();
  browser = await launch({ webgpu: false });
  page = await (await browser.newContext()).newPage();
  // A page of the origin that runs nothing of its own (the demo registers a service worker).
  await page.goto(`${app.origin}/pkg/package.json`);
});

after(async () => {
  await browser?.close();
  await app?.stop();
});

test('a sealed model answers as the plain one does; a wrong key keeps nothing', async () => {
  const out = await page.evaluate(async () => {
    const { Engine, WorkerEngine } = await import('/pkg/index.js');
    const body = { messages: [{ role: 'user', content: 'Tell me about the sea.' }], temperature: 0, max_tokens: 16 };
    const answer = async (engine) => (await engine.chat.completions.create(body)).choices[0].message.content;
    const plain = await Engine.load('/models/tiny-qwen3-q4_0.gguf', { backend: 'cpu' });
    const key = new Uint8Array(32).fill(7);
    const sealed = await Engine.load('/models/tiny-qwen3-q4_0.cgguf', { backend: 'cpu', decryptionKey: key });
    const cryptoKey = await crypto.subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
    const worker = await WorkerEngine.load('/models/tiny-qwen3-q4_0.cgguf?worker=1', { backend: 'cpu', decryptionKey: cryptoKey });
    const wrongUrl = new URL('/models/tiny-qwen3-q4_0.cgguf?wrong=1', location.href).href;
    const wrong = await Engine.load(wrongUrl, { backend: 'cpu', decryptionKey: new Uint8Array(32).fill(8) })
      .then(() => 'loaded', (e) => e.code);
    const cached = (await Engine.cached()).map((f) => f.url);
    const out = { plain: await answer(plain), sealed: await answer(sealed), worker: await answer(worker), wrong, kept: cached.includes(wrongUrl), sealedKept: cached.some((u) => u.endsWith('.cgguf')) };
    worker.unload();
    return out;
  });
  assert.ok(out.plain.length > 0);
  assert.equal(out.sealed, out.plain, 'the same answer from the sealed file');
  assert.equal(out.worker, out.plain, 'and through a worker with a non-extractable CryptoKey');
  assert.equal(out.wrong, 'decryption_failed');
  assert.equal(out.kept, false, 'nothing kept of the file the key did not open');
  assert.equal(out.sealedKept, true, 'the sealed file that opened is kept, sealed');
});
