// The service worker's routing overhead: 200 sequential non-streamed requests through it
// (page → service worker → router in wasm → provider) against 200 straight from the page to the
// same provider on 127.0.0.1, in one browser run. Prints p50 and p95 of both and the difference;
// also deterministic requests (temperature 0, each one different) through it, which are coalesced
// and whose answers go to the answer cache in IndexedDB.
//
//   node scripts/build_pkg.mjs && node scripts/bench_router.mjs [requests]
import { spawn } from 'node:child_process';
import { launch, startServer, root } from '../tests/web/harness.mjs';

const n = Number(process.argv[2] || 200);
const child = spawn(process.execPath, ['scripts/provider.mjs', '--name', 'bench', '--words', '4'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
const provider = (await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d))))).match(/http:\/\/[\d.:]+/)[0];
const app = await startServer();
const browser = await launch();
try {
  const page = await browser.newPage();
  await page.goto(`${app.origin}/`);
  const r = await page.evaluate(async ({ provider, n }) => {
    await navigator.serviceWorker.register('/sw.js', { type: 'module' });
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
    const { configureRouter } = await import('/pkg/index.js');
    await configureRouter({ mode: 'remote-only', providers: [{ name: 'bench', baseUrl: `${provider}/v1`, rate: { requestsPerS: 1000, burst: 1000, maxConcurrent: 4 } }] });
    const plain = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    const time = async (url, body = plain) => {
      const t = performance.now();
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await res.json();
      return performance.now() - t;
    };
    const through = [];
    const direct = [];
    const kept = [];
    const deterministic = (i) => JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `hi ${i}` }], temperature: 0 });
    for (let i = 0; i < 10; i++) { await time('/v1/chat/completions'); await time(`${provider}/v1/chat/completions`); } // warm-up
    for (let i = 0; i < n; i++) {
      through.push(await time('/v1/chat/completions'));
      direct.push(await time(`${provider}/v1/chat/completions`));
      kept.push(await time('/v1/chat/completions', deterministic(i)));
    }
    return { through, direct, kept };
  }, { provider, n });
  const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
  const row = (name, xs) => `| ${name} | ${pct(xs, 0.5).toFixed(2)} | ${pct(xs, 0.95).toFixed(2)} |`;
  console.log(`${n} sequential non-streamed requests each way, interleaved, same browser and provider\n`);
  console.log('| path | p50 ms | p95 ms |\n|---|---|---|');
  console.log(row('through the service worker', r.through));
  console.log(row('straight to the provider', r.direct));
  console.log(row('through it, temperature 0 (answers cached)', r.kept));
  console.log(`\noverhead: p50 +${(pct(r.through, 0.5) - pct(r.direct, 0.5)).toFixed(2)} ms, p95 +${(pct(r.through, 0.95) - pct(r.direct, 0.95)).toFixed(2)} ms`);
} finally {
  await browser.close();
  await app.stop();
  child.kill();
}
