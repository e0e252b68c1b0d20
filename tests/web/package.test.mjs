// The npm package as a user gets it: `npm pack` on pkg/, the tarball installed into a fresh Vite
// app, `vite build`, the build served and a chat run in Chromium through the public API alone
// (WorkerEngine streaming and not, Engine with an abort, typed errors, the cache listing).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, startServer, root } from './harness.mjs';

const dir = mkdtempSync(join(tmpdir(), 'candlelight-vite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

// The file's SHA-256, as an app that knows it passes it: the whole file is verified against it.
const SHA256 = createHash('sha256').update(readFileSync(join(root, 'fixtures/tiny-qwen3-q8_0.gguf'))).digest('hex');

const APP = `
import { Engine, WorkerEngine, CandlelightError } from 'candlelight';

const model = new URL('/models/tiny-qwen3-q8_0.gguf', location.href).href;
const sha256 = '${SHA256}';
const messages = [{ role: 'user', content: 'Hello from a bundled app' }];
const out = {};
try {
  const progress = [];
  const worker = await WorkerEngine.load(model, { chunkSize: 65536, sha256, onProgress: (p) => progress.push(p.phase) });
  out.info = worker.info;
  out.phases = [...new Set(progress)];
  const whole = await worker.chat.completions.create({ messages, max_tokens: 16, temperature: 0.5, seed: 9 });
  out.whole = whole;
  let text = '';
  out.chunks = 0;
  const stream = await worker.chat.completions.create({ messages, max_tokens: 16, temperature: 0.5, seed: 9, stream: true, stream_options: { include_usage: true } });
  for await (const chunk of stream) {
    out.chunks++;
    text += chunk.choices[0]?.delta.content ?? '';
    if (chunk.usage) out.streamUsage = chunk.usage;
  }
  out.streamText = text;
  try {
    await worker.chat.completions.create({ messages: [] });
  } catch (e) {
    out.badRequest = { isError: e instanceof CandlelightError, code: e.code, param: e.param };
  }
  worker.unload();

  const engine = await Engine.load(model);
  const controller = new AbortController();
  let seen = 0;
  try {
    const s = await engine.chat.completions.create({ messages, max_tokens: 200, stream: true, signal: controller.signal });
    for await (const chunk of s) {
      seen++;
      controller.abort();
    }
    out.abort = { seen, code: 'none' };
  } catch (e) {
    out.abort = { seen, code: e.code };
  }
  out.cached = (await Engine.cached()).map((f) => ({ url: f.url, complete: f.complete }));
  engine.unload();
} catch (e) {
  out.error = { code: e.code, message: e.message };
}
window.result = out;
`;

test('npm pack → fresh Vite app → build → chat in Chromium through the public API', async () => {
  execFileSync('npm', ['pack', '--pack-destination', dir], { cwd: join(root, 'pkg'), stdio: 'pipe' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack wrote a tarball');
  const files = execFileSync('tar', ['-tzf', join(dir, tarball)], { encoding: 'utf8' });
  for (const f of ['index.js', 'index.d.ts', 'worker.js', 'candlelight_bg.wasm', 'package.json']) {
    assert.ok(files.includes(`package/${f}`), `${f} is in the package`);
  }
  const app = join(dir, 'app');
  execFileSync('mkdir', ['-p', join(app, 'src')]);
  const vite = JSON.parse(execFileSync('node', ['-p', 'JSON.stringify(require("vite/package.json").version)'], { cwd: root, encoding: 'utf8' }));
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'fresh-app', private: true, type: 'module',
    dependencies: { candlelight: `file:../${tarball}` }, devDependencies: { vite },
  }, null, 2));
  // The worker imports the package's ESM, so Vite must bundle workers as ES modules.
  writeFileSync(join(app, 'vite.config.js'), "export default { worker: { format: 'es' }, build: { target: 'es2022' } };\n");
  writeFileSync(join(app, 'index.html'), '<!doctype html><html><body><script type="module" src="/src/main.js"></script></body></html>\n');
  writeFileSync(join(app, 'src/main.js'), APP);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: app, stdio: 'pipe' });
  execFileSync('npx', ['vite', 'build'], { cwd: app, stdio: 'pipe' });
  const built = readdirSync(join(app, 'dist/assets'));
  assert.ok(built.some((f) => f.endsWith('.wasm')), `the .wasm is emitted: ${built}`);

  const server = await startServer(['--www', join(app, 'dist')]);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(server.origin + '/');
    await page.waitForFunction(() => window.result, null, { timeout: 60_000 });
    const r = await page.evaluate(() => window.result);
    assert.equal(r.error, undefined, JSON.stringify(r.error));
    assert.equal(r.info.architecture, 'qwen3');
    // WebGPU is on in this browser: `auto` loads onto the GPU, then compiles its kernels.
    assert.equal(r.info.backend, 'gpu');
    assert.deepEqual(r.phases, ['download', 'verify', 'load', 'compile']);
    assert.equal(r.info.verified, true, 'verified against the SHA-256 the app gave');
    assert.equal(r.whole.object, 'chat.completion');
    assert.equal(r.whole.choices[0].message.content, r.streamText, 'same seed, same text, streamed or not');
    assert.ok(r.chunks >= 3);
    assert.equal(r.streamUsage.completion_tokens, r.whole.usage.completion_tokens);
    assert.deepEqual(r.badRequest, { isError: true, code: 'invalid_request', param: 'messages' });
    assert.deepEqual(r.abort, { seen: 1, code: 'aborted' });
    assert.ok(r.cached.some((f) => f.url.endsWith('tiny-qwen3-q8_0.gguf') && f.complete));
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await server.stop();
  }
});
