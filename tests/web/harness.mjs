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

// Servers the tests start. They must not keep a test file alive after a failed assertion skips
// its cleanup: each is unref'd once it listens, and whatever is left is stopped on exit.
const children = new Set();
process.on('exit', () => { for (const c of children) c.kill(); });

/** Starts a helper script; resolves to its child and its first line of output. */
async function helper(args) {
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const line = await new Promise((resolve, reject) => {
    child.stdout.once('data', (d) => resolve(String(d)));
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)));
  });
  child.unref();
  child.stdout.unref();
  return { child, line };
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
  const { child } = await helper(['scripts/serve.mjs', '--port', String(port), ...extraArgs]);
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
        child.ref();
        child.once('exit', resolve);
        child.kill();
      });
    },
  };
}

/** Starts scripts/provider.mjs (an OpenAI-compatible provider with faults on command). */
export async function startProvider(name, extra = []) {
  const { child, line } = await helper(['scripts/provider.mjs', '--name', name, ...extra]);
  const origin = line.match(/http:\/\/[\d.:]+/)[0];
  return {
    origin,
    child,
    faults: (list) => fetch(`${origin}/__faults`, { method: 'POST', body: JSON.stringify({ faults: list }) }),
    log: async () => (await fetch(`${origin}/__log`)).json(),
    stop: () => child.kill(),
  };
}

/** Starts scripts/hub.mjs, the Hugging Face hub emulator (a hub and its CDN). */
export async function startHub() {
  const { child, line } = await helper(['scripts/hub.mjs']);
  const [, origin, cdn] = line.match(/^hub (\S+) cdn (\S+)/);
  return {
    origin,
    cdn,
    control: async (repo, query = '') => (await fetch(`${origin}/__control?repo=${repo}&${query}`)).json(),
    log: async (repo) => (await fetch(`${origin}/__log?repo=${repo}`)).json(),
    stop() {
      return new Promise((resolve) => {
        child.ref();
        child.once('exit', resolve);
        child.kill();
      });
    },
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
