// Our CPU product kernels in this page's thread (single-thread build; `relaxed=0` the plain
// SIMD128 one), on the 0.5B shape's FFN and head matrices: weight bytes and multiply-adds per
// second, against how fast the thread reads a buffer of the same size. For
// scripts/bench_web.mjs --kernels. `peak`: the build's integer dot at its best, on values in
// registers, the ceiling of any tile.
import { glue, initWasm } from '/pkg/wasm.js';

const params = new URLSearchParams(location.search);
const relaxedSimd = params.get('relaxed') !== '0';
const minMs = Number(params.get('ms') || 400);
const out = { relaxed_simd: null, rows: [] };
try {
  await initWasm(undefined, { threads: 1, relaxedSimd });
  out.relaxed_simd = glue.relaxedSimd();
  out.peak = glue.benchPeak(minMs);
  const shapes = [
    ['ffn up', 896, 4864, 1],
    ['ffn up', 896, 4864, 128],
    ['head', 896, 151936, 1],
  ];
  for (const type of (params.get('types') || 'Q4_0,Q4_1,Q8_0').split(',')) {
    for (const [name, nIn, nOut, rows] of shapes) {
      const r = glue.benchKernel(type, nIn, nOut, rows, minMs);
      out.rows.push({ type, name, nIn, nOut, rows, ...r });
    }
  }
} catch (e) {
  out.error = String(e?.stack ?? e?.message ?? e);
}
window.result = out;
