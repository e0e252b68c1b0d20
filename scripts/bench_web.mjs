// CPU speed in headless Chromium: candlelight against wllama (llama.cpp in wasm, no GPU) on the
// same GGUF files, in the same browser run, at 1 and 2 threads (a cross-origin isolated page, so
// both run their threaded builds above 1). Prints prefill and decode tok/s of both, their ratio,
// and candlelight's wasm memory as a multiple of the file size.
//
//   cargo run --release --example make_fixtures -- fixtures bench   # the 0.5B-shaped files
//   node scripts/build_pkg.mjs && node scripts/bench_web.mjs [fixtures] [runs] [--threads 1,2]
//
// With --plain: candlelight's plain SIMD128 build too (no wllama in those pages), against its
// relaxed-SIMD build, which the others run where Chromium has relaxed SIMD.
//
// With --gpu [fixtures] [runs] [decode] [prompt]: candlelight's WebGPU backend against its CPU
// backend instead (no wllama), in one browser with WebGPU on (SwiftShader here: figures, not a
// GPU's speed), with the wasm memory each holds: the GPU path keeps the weights out of the
// wasm heap.
//
// With --kernels: our product kernels alone, in a page's thread, relaxed and plain builds, on the
// 0.5B shape's FFN (decode and a 128-row prefill) and head matrices: weight GB/s and
// multiply-adds per second, against how fast that thread reads a buffer of the matrix's size and
// against the build's integer dot at its best (values in registers: a tile's ceiling).
import { launch, startServer } from '../tests/web/harness.mjs';
import { resolve } from 'node:path';

const gpu = process.argv.includes('--gpu');
const threadsAt = process.argv.indexOf('--threads');
const threadCounts = (threadsAt > 0 ? process.argv[threadsAt + 1] : '1,2').split(',').map(Number);
const positional = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--threads');
if (gpu) await benchGpu();
if (process.argv.includes('--kernels')) await benchKernels();
const models = resolve(positional[0] || 'fixtures');
const runs = positional[1] || '3';
const files = ['qwen2.5-0.5b-shape-q4_0.gguf', 'qwen2.5-0.5b-shape-q8_0.gguf', 'SmolLM2-135M-Instruct.Q4_1.gguf'];
const plainToo = process.argv.includes('--plain');
const server = await startServer(['--models', models, '--www', resolve('scripts/bench_web'), '--isolate']);
const browser = await launch({ webgpu: false });
const rows = [];
const plainRows = [];
try {
  const pages = files.flatMap((f) => threadCounts.flatMap((t) => [[f, t, ''], ...(plainToo ? [[f, t, '&relaxed=0&peer=0']] : [])]));
  for (const [file, threads, extra] of pages) {
    const page = await browser.newPage();
    page.on('console', (m) => m.type() === 'error' && console.error(`  [page] ${m.text()}`));
    await page.goto(`${server.origin}/?model=/models/${file}&runs=${runs}&threads=${threads}${extra}`);
    await page.waitForFunction(() => window.result, null, { timeout: 1_800_000, polling: 1000 });
    const r = await page.evaluate(() => window.result);
    await page.close();
    if (r.error) throw new Error(`${file}: ${r.error}`);
    (extra ? plainRows : rows).push(r);
    console.log(JSON.stringify(r));
  }
} finally {
  await browser.close();
  await server.stop();
}
const f = (x) => x.toFixed(1);
console.log('\n| file | threads (ours) | prompt/decode tokens | prefill ours | prefill wllama | ratio | decode ours | decode wllama | ratio | wasm memory / file |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const { ours, wllama } = r;
  console.log(`| ${r.model.split('/').pop()} | ${r.threads} | ${ours.prompt_tokens}/${ours.decode_tokens} (wllama ${wllama.prompt_tokens}/${wllama.decode_tokens}) | ${f(ours.prefill_tok_s)} | ${f(wllama.prefill_tok_s)} | ${(ours.prefill_tok_s / wllama.prefill_tok_s).toFixed(2)} | ${f(ours.decode_tok_s)} | ${f(wllama.decode_tok_s)} | ${(ours.decode_tok_s / wllama.decode_tok_s).toFixed(2)} | ${(r.ours_wasm_bytes / r.file_bytes).toFixed(2)}× (${(r.ours_wasm_bytes / 1048576).toFixed(0)} MiB) |`);
}

if (plainToo) {
  console.log('\n| file | threads | prefill relaxed | prefill plain | ratio | decode relaxed | decode plain | ratio |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const p of plainRows) {
    const r = rows.find((x) => x.model === p.model && x.threads === p.threads);
    if (!r?.relaxed_simd || p.relaxed_simd) continue;
    console.log(`| ${p.model.split('/').pop()} | ${p.threads} | ${f(r.ours.prefill_tok_s)} | ${f(p.ours.prefill_tok_s)} | ${(r.ours.prefill_tok_s / p.ours.prefill_tok_s).toFixed(2)} | ${f(r.ours.decode_tok_s)} | ${f(p.ours.decode_tok_s)} | ${(r.ours.decode_tok_s / p.ours.decode_tok_s).toFixed(2)} |`);
  }
}

console.log('\n| file | threads | decode step: matmul ms | attention | norms | other | head | inside wasm | wall per token |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) {
  const p = r.ours_profile;
  const inside = p.matmulMs + p.attentionMs + p.normsMs + p.otherMs + p.headMs;
  console.log(`| ${r.model.split('/').pop()} | ${r.threads} | ${p.matmulMs.toFixed(2)} | ${p.attentionMs.toFixed(2)} | ${p.normsMs.toFixed(2)} | ${p.otherMs.toFixed(2)} | ${p.headMs.toFixed(2)} | ${inside.toFixed(2)} | ${p.wall_ms_per_token.toFixed(2)} |`);
}

async function benchGpu() {
  const models = resolve(positional[0] || 'fixtures');
  const runs = positional[1] || '1';
  const decode = positional[2] || '16';
  const prompt = positional[3] || '32';
  const server = await startServer(['--models', models, '--www', resolve('scripts/bench_web')]);
  const browser = await launch({ webgpu: true });
  const rows = [];
  try {
    for (const file of ['qwen2.5-0.5b-shape-q4_0.gguf', 'qwen2.5-0.5b-shape-q8_0.gguf']) {
      for (const backend of ['gpu', 'cpu']) {
        const page = await browser.newPage();
        await page.goto(`${server.origin}/?model=/models/${file}&runs=${runs}&backend=${backend}&peer=0&decode=${decode}&prompt=${prompt}`);
        await page.waitForFunction(() => window.result, null, { timeout: 1_800_000, polling: 1000 });
        const r = await page.evaluate(() => window.result);
        await page.close();
        if (r.error) throw new Error(`${file} ${backend}: ${r.error}`);
        console.log(JSON.stringify(r));
        rows.push(r);
      }
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  console.log('\n| file | backend | prompt/decode tokens | prefill tok/s | decode tok/s | GPU dispatches / passes per token | CPU encode ms per token | wasm memory after load |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const mem = `${(r.ours_wasm_bytes_loaded / 1048576).toFixed(0)} MiB (${(r.ours_wasm_bytes_loaded / r.file_bytes).toFixed(2)}× the file)`;
    const p = r.ours_profile ?? {};
    const gpuSteps = p.dispatches === undefined ? ['—', '—'] : [`${p.dispatches.toFixed(1)} / ${p.passes.toFixed(1)}`, p.encodeMs.toFixed(3)];
    console.log(`| ${r.model.split('/').pop()} | ${r.backend} | ${r.ours.prompt_tokens}/${r.ours.decode_tokens} | ${r.ours.prefill_tok_s.toFixed(1)} | ${r.ours.decode_tok_s.toFixed(2)} | ${gpuSteps.join(' | ')} | ${mem} |`);
  }
  process.exit(0);
}

async function benchKernels() {
  const server = await startServer(['--www', resolve('scripts/bench_web')]);
  const browser = await launch({ webgpu: false });
  const results = [];
  try {
    for (const relaxed of ['1', '0']) {
      const page = await browser.newPage();
      await page.goto(`${server.origin}/kernels.html?relaxed=${relaxed}`);
      await page.waitForFunction(() => window.result, null, { timeout: 600_000, polling: 500 });
      const r = await page.evaluate(() => window.result);
      await page.close();
      if (r.error) throw new Error(r.error);
      results.push(r);
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  console.log('\n| build | dot at its best, GMAC/s |');
  console.log('|---|---|');
  for (const r of results) console.log(`| ${r.relaxed_simd ? 'relaxed' : 'plain'} | ${(r.peak / 1e9).toFixed(1)} |`);
  console.log('\n| build | type | matrix | rows | weight GB/s | GMAC/s | share of the best dot | thread reads GB/s | share of reads |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    for (const k of r.rows) {
      const build = r.relaxed_simd ? 'relaxed' : 'plain';
      // A prefill tile reads each weight once for many rows: its bytes per second say nothing.
      const [gbs, share] = k.rows > 1 ? ['—', '—'] : [(k.bytesPerS / 1e9).toFixed(2), (k.bytesPerS / k.readBytesPerS).toFixed(2)];
      console.log(`| ${build} | ${k.type} | ${k.name} ${k.nOut}×${k.nIn} | ${k.rows} | ${gbs} | ${(k.macsPerS / 1e9).toFixed(1)} | ${(k.macsPerS / r.peak).toFixed(2)} | ${(k.readBytesPerS / 1e9).toFixed(1)} | ${share} |`);
    }
  }
  process.exit(0);
}
