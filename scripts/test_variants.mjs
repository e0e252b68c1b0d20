// The library's wasm-bindgen tests in the relaxed and both threaded builds (variants.mjs), in
// headless Chromium, as scripts/test_web.sh runs them in the plain build: every CPU test (the
// tiles against the scalar definition, the relaxed tiles against the plain ones bit for bit, the
// exact block dots, IQ4; in the threaded builds, products on a pool of two workers against one
// thread). The GPU kernel tests are left to the plain build: their WGSL is the same in every
// build. Needs chromedriver and wasm-bindgen-test-runner on PATH.
//   node scripts/test_variants.mjs
import { execFileSync } from 'node:child_process';
import { VARIANTS, cargo, root } from './variants.mjs';

const which = (name) => execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
const runner = {
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER: which('wasm-bindgen-test-runner'),
  CHROMEDRIVER: which('chromedriver'),
  WASM_BINDGEN_TEST_ONLY_WEB: '1',
  WASM_BINDGEN_TEST_TIMEOUT: '300',
};
for (const variant of VARIANTS) {
  console.log(`wasm-bindgen tests, ${variant.dir} build`);
  const { args, env } = cargo('test', variant);
  execFileSync('cargo', [...args, '--', '--skip', 'engine::gpu::'], { cwd: root, stdio: 'inherit', env: { ...env, ...runner } });
}
