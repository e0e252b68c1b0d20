// The demo as an installable offline app in headless Chromium: a valid manifest with plain and
// maskable icons, a service worker that controls the page, Chromium's own installability check
// passing, and start_url opening with the server gone (a page never stored shows the offline page).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, startServer } from './harness.mjs';

const pngSize = (bytes) => [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];

test('installable, controlled by its service worker, and start_url opens offline', async () => {
  const app = await startServer();
  let stopped = false;
  // A real profile: Chromium does not install apps from incognito contexts.
  const profile = mkdtempSync(join(tmpdir(), 'candlelight-pwa-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, '--enable-unsafe-webgpu'],
  });
  try {
    const page = await context.newPage();
    await page.goto(`${app.origin}/`);
    await page.evaluate(async () => {
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
    });
    assert.ok(await page.evaluate(() => Boolean(navigator.serviceWorker.controller)), 'the service worker controls the page');

    const manifest = await (await fetch(`${app.origin}/manifest.webmanifest`)).json();
    assert.equal(manifest.display, 'standalone');
    assert.equal(manifest.start_url, './');
    assert.match(manifest.theme_color, /^#[0-9a-f]{6}$/);
    assert.ok(manifest.name && manifest.short_name);
    for (const purpose of ['any', 'maskable']) {
      for (const size of [192, 512]) {
        const icon = manifest.icons.find((i) => i.purpose === purpose && i.sizes === `${size}x${size}`);
        assert.ok(icon, `${purpose} ${size}`);
        const bytes = Buffer.from(await (await fetch(new URL(icon.src, `${app.origin}/`))).arrayBuffer());
        assert.deepEqual(pngSize(bytes), [size, size], `${icon.src} is a ${size}px PNG`);
      }
    }
    const cdp = await context.newCDPSession(page);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, [], 'Chromium finds the app installable');
    const { url: manifestUrl, errors } = await cdp.send('Page.getAppManifest');
    assert.match(manifestUrl, /manifest\.webmanifest$/);
    assert.deepEqual(errors, []);

    // Wait until the shell is stored, then take the server away.
    await page.waitForFunction(async () => (await (await caches.open('candlelight-shell')).keys()).length >= 10, null, { polling: 200 });
    await app.stop();
    stopped = true;
    await page.goto(`${app.origin}/`);
    assert.ok(await page.locator('#catalog').count(), 'start_url opened from the cache');
    assert.match(await page.title(), /candlelight/);
    assert.equal(await page.evaluate(() => import('/pkg/index.js').then((m) => typeof m.Engine)), 'function', 'the package, wasm glue and snippets load offline');
    await page.goto(`${app.origin}/never-stored.html`);
    assert.ok(await page.locator('#offline').count(), 'the offline page');
  } finally {
    await context.close();
    if (!stopped) await app.stop();
    rmSync(profile, { recursive: true, force: true });
  }
});
