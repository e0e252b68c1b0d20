// Cached start in headless Chromium: a model downloaded once into IndexedDB, then each run opens
// a new page in the same profile and times, from its navigation, WorkerEngine.load from
// IndexedDB and the first streamed token of a one-line chat (CPU backend). Prints the median
// of each mark over the runs, per file and thread count.
//
//   cargo run --release --example make_fixtures -- fixtures bench   # the 0.5B-shaped files
//   node scripts/build_pkg.mjs && node scripts/bench_start.mjs [fixtures] [runs] [--threads 1,2]
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM_ARGS, startServer } from '../tests/web/harness.mjs';

const threadsAt = process.argv.indexOf('--threads');
const threadCounts = (threadsAt > 0 ? process.argv[threadsAt + 1] : '1,2').split(',').map(Number);
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--threads');
const models = resolve(positional[0] || 'fixtures');
const runs = Number(positional[1] || 5);
const files = ['qwen2.5-0.5b-shape-q4_0.gguf', 'SmolLM2-135M-Instruct.Q4_1.gguf'];
const server = await startServer(['--models', models, '--www', resolve('scripts/bench_start'), '--isolate']);
const profile = mkdtempSync(join(tmpdir(), 'candlelight-start-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [...CHROMIUM_ARGS, '--disable-gpu'],
});
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function open(file, threads) {
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && console.error(`  [page] ${m.text()}`));
  await page.goto(`${server.origin}/?model=/models/${file}&threads=${threads}`);
  await page.waitForFunction(() => window.result, null, { timeout: 600_000, polling: 50 });
  const r = await page.evaluate(() => window.result);
  await page.close();
  if (r.error) throw new Error(`${file}: ${r.error}`);
  return r;
}

const rows = [];
try {
  for (const file of files) {
    const first = await open(file, 1); // downloads into IndexedDB
    console.log(`${file}: first visit (download) ${JSON.stringify(first.marks)}`);
    for (const threads of threadCounts) {
      const all = [];
      for (let i = 0; i < runs; i++) {
        const r = await open(file, threads);
        console.log(`${file} threads ${r.threads}: ${JSON.stringify(r.marks)}`);
        all.push(r);
      }
      const names = [...new Set(all.flatMap((r) => Object.keys(r.marks)))];
      const marks = Object.fromEntries(names.map((n) => [n, median(all.map((r) => r.marks[n] ?? NaN))]));
      rows.push({ file, threads: all[0].threads, size: all[0].size, marks });
    }
  }
} finally {
  await context.close();
  await server.stop();
  rmSync(profile, { recursive: true, force: true });
}
console.log('\nmedian ms from navigation start');
console.log('| file | MB | threads | module imported | first load progress | loaded | first token |');
console.log('|---|---|---|---|---|---|---|');
for (const { file, size, threads, marks: m } of rows) {
  console.log(`| ${file} | ${(size / 1e6).toFixed(0)} | ${threads} | ${m.imported} | ${m.load_first} | ${m.loaded} | ${m.first_token} |`);
}
