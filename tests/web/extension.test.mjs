// The Manifest V3 extension (www/extension/, built from the package's own files by
// scripts/build_extension.mjs) loaded into headless Chromium with --load-extension: the router
// runs in its background service worker, the engine in its offscreen document, and the popup
// gets answers from the local model and from a provider on 127.0.0.1. Headless Chromium has no
// toolbar to click, so the popup's page is opened at its own URL; it is the same document.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, root, startProvider, startServer } from './harness.mjs';

const dir = join(root, 'www/extension');
let context;
let profile;
let server;
let provider;
let worker;
let id;

before(async () => {
  execFileSync(process.execPath, ['scripts/build_extension.mjs'], { cwd: root, stdio: 'ignore' });
  server = await startServer();
  provider = await startProvider('cloud');
  profile = mkdtempSync(join(tmpdir(), 'candlelight-ext-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu', `--disable-extensions-except=${dir}`, `--load-extension=${dir}`],
  });
  worker = context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://'))
    ?? await context.waitForEvent('serviceworker', { predicate: (w) => w.url().startsWith('chrome-extension://'), timeout: 20000 });
  id = new URL(worker.url()).host;
});

after(async () => {
  await context?.close();
  await server?.stop();
  provider?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function popup() {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('popup error:', e.message));
  await page.goto(`chrome-extension://${id}/popup.html`);
  // A page opened before the worker activated is taken over by its clients.claim(); a reload
  // is the user's way out when that has not happened.
  const controlled = () => page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 10000 }).then(() => true, () => false);
  if (!(await controlled())) {
    console.error('popup not controlled after 10 s; worker:', await worker.evaluate(() => self.registration.active?.state ?? 'no active worker').catch((e) => e.message));
    await page.reload();
    assert.ok(await controlled(), 'the background worker controls the popup');
  }
  return page;
}

const openSettings = (page) => page.evaluate(() => { document.querySelector('#settings').open = true; });

async function askFrom(page, prompt) {
  await page.evaluate(() => { delete document.body.dataset.answered; });
  await page.fill('#prompt', prompt);
  await page.click('#send');
  await page.waitForFunction(() => document.body.dataset.answered === 'yes' || document.querySelector("#answer.error"), null, { timeout: 120000 });
  return {
    route: await page.getAttribute('#route', 'data-route'),
    answer: await page.textContent('#answer'),
    error: await page.locator('#answer.error').count(),
  };
}

test('the extension is Manifest V3 with wasm-unsafe-eval and runs only its own files', () => {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.manifest_version, 3);
  assert.equal(manifest.background.type, 'module');
  assert.match(manifest.content_security_policy.extension_pages, /script-src 'self' 'wasm-unsafe-eval'/);
  assert.doesNotMatch(manifest.content_security_policy.extension_pages, /https?:/);
  // Every script the extension loads is a file in it: no remote code, no CDN.
  const scripts = [];
  const walk = (d) => readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(join(d, e.name)) : scripts.push(join(d, e.name))));
  walk(dir);
  for (const file of scripts.filter((f) => /\.(js|html)$/.test(f))) {
    const text = readFileSync(file, 'utf8');
    assert.doesNotMatch(text, /(import|from|src=)\s*\(?\s*['"]https?:/, `${file} loads nothing remote`);
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.[^'"]+)['"]/g)) {
      assert.ok(scripts.includes(join(file, '..', m[1])), `${file} imports ${m[1]}, which is in the extension`);
    }
  }
  assert.ok(scripts.includes(join(dir, 'pkg/candlelight_bg.wasm')), 'the package wasm is inside the extension');
});

test('the popup gets an answer from the engine in the offscreen document, through the router in the background worker', async () => {
  const page = await popup();
  await openSettings(page);
  await page.fill('#model-url', `${server.origin}/models/tiny-qwen3-q4_k_m.gguf`);
  await page.click('#use-model');
  await page.waitForFunction(() => ['ready', 'failed'].includes(document.querySelector('#engine').dataset.state), null, { timeout: 90000 });
  assert.match(await page.textContent('#engine'), /^Ready: /);
  // The engine's page is the offscreen document, a client of the background worker.
  const clients = await worker.evaluate(async () => (await self.clients.matchAll()).map((c) => new URL(c.url).pathname));
  assert.ok(clients.includes('/offscreen.html'), `clients: ${clients}`);
  const models = await page.evaluate(async () => (await fetch('/v1/models')).json());
  assert.ok(models.data.some((m) => m.owned_by === 'local'), 'the router lists the local model');

  const r = await askFrom(page, 'Hello from the popup');
  assert.equal(r.error, 0, r.answer);
  assert.equal(r.route, 'local');
  assert.ok(r.answer.length > 0, 'a non-empty answer');
  assert.equal((await provider.log()).length, 0, 'no provider was asked');
  await page.close();
});

test('with a provider saved in the popup and remote-first, the answer comes from the provider; the settings survive a reopen', async () => {
  let page = await popup();
  await openSettings(page);
  await page.selectOption('#mode', 'remote-first');
  await page.fill('#provider-url', `${provider.origin}/v1`);
  await page.fill('#provider-key', 'sk-test');
  await page.fill('#provider-model', 'deepseek-chat');
  await page.click('#save');
  await page.waitForFunction(() => document.querySelector('#saved').textContent !== '');
  assert.equal(await page.textContent('#saved'), 'Saved.');
  const r = await askFrom(page, 'Hello, cloud');
  assert.equal(r.error, 0, r.answer);
  assert.equal(r.route, '127.0.0.1');
  assert.match(r.answer, /^w0 w1 /);
  const [seen] = await provider.log();
  assert.equal(seen.body.model, 'deepseek-chat', 'the popup model name is mapped to the provider model');
  assert.equal(seen.auth, 'sk-test');
  // The key lives sealed in the background worker; the popup's storage knows only that it is there.
  const kept = await page.evaluate(() => chrome.storage.local.get(null));
  assert.ok(!JSON.stringify(kept).includes('sk-test'), 'no key in chrome.storage');
  assert.equal(await page.inputValue('#provider-key'), '');
  // Saving again without typing it keeps it.
  await page.evaluate(() => { document.querySelector('#saved').textContent = ''; });
  await page.click('#save');
  await page.waitForFunction(() => document.querySelector('#saved').textContent === 'Saved.');
  await askFrom(page, 'Hello once more');
  assert.equal((await provider.log()).at(-1).auth, 'sk-test', 'the kept key is still sent');
  await page.close();

  // The provider is busy: remote-first falls back to the local engine, and the popup still answers.
  await provider.faults(['503busy', '503busy', '503busy', '503busy']);
  page = await popup();
  assert.equal(await page.inputValue('#mode'), 'remote-first');
  assert.equal(await page.inputValue('#provider-url'), `${provider.origin}/v1`);
  const fallback = await askFrom(page, 'Hello again');
  assert.equal(fallback.error, 0, fallback.answer);
  assert.equal(fallback.route, 'local');
  await page.close();
});
