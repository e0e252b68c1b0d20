// Shared by the browser tests: Debian's Chromium through playwright-core, and the model server
// (scripts/serve.mjs) started on a free port for each test file.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { chromium } from 'playwright-core';

export const root = new URL('../..', import.meta.url).pathname;

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic',
];

export function launch({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : ['--disable-gpu'])],
  });
}

export function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts scripts/serve.mjs; resolves once it listens. `stop()` kills it. */
export async function startServer(extraArgs = [], port) {
  port ??= await freePort();
  const child = spawn(process.execPath, ['scripts/serve.mjs', '--port', String(port), ...extraArgs], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    child.stdout.once('data', resolve);
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    port,
    async control(query) {
      return (await fetch(`${origin}/__control?${query}`)).json();
    },
    async log() {
      return (await fetch(`${origin}/__log`)).json();
    },
    stop() {
      return new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill();
      });
    },
  };
}

/** Starts scripts/provider.mjs (an OpenAI-compatible provider with faults on command). */
export async function startProvider(name, extra = []) {
  const child = spawn(process.execPath, ['scripts/provider.mjs', '--name', name, ...extra], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d))));
  const origin = line.match(/http:\/\/[\d.:]+/)[0];
  return {
    origin,
    child,
    faults: (list) => fetch(`${origin}/__faults`, { method: 'POST', body: JSON.stringify({ faults: list }) }),
    log: async () => (await fetch(`${origin}/__log`)).json(),
    stop: () => child.kill(),
  };
}

/** Opens `origin` in `page` with the demo's service worker (the router) controlling it. */
export async function openWithRouter(page, origin) {
  await page.goto(`${origin}/`);
  await page.evaluate(async () => {
    await navigator.serviceWorker.register('/sw.js', { type: 'module' });
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
  });
  return page;
}

/** Sends the router its configuration from `page`, through the package; throws unless it took it. */
export async function configureRouter(page, config) {
  const refused = await page.evaluate(async (c) => {
    const { configureRouter } = await import('/pkg/index.js');
    return configureRouter(c).then(() => null, (e) => `${e.code}: ${e.message}`);
  }, config);
  if (refused) throw new Error(`router config refused: ${refused}`);
}

/** POSTs a chat-completions body through the service worker from `page`: the stream's chunks,
 *  parsed, or the JSON answer, with the status and the route that answered. */
export function completeThrough(page, body) {
  return page.evaluate(async (body) => {
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const out = { status: res.status, route: res.headers.get('x-candlelight-route'), retryAfter: res.headers.get('retry-after') };
    const text = await res.text();
    if (!(res.headers.get('content-type') ?? '').includes('event-stream')) return { ...out, json: JSON.parse(text) };
    const events = text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
    return { ...out, done: events.at(-1) === '[DONE]', chunks: events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e)) };
  }, body);
}
