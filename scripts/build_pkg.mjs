// Builds pkg/, the npm package: wasm-pack's output (ESM for the web target, the .wasm, the inline
// JS snippets), the other three builds wasm.js picks from (pkg/relaxed/: relaxed SIMD;
// pkg/threads/: std rebuilt with atomics and shared memory, rayon on a worker pool, on the stable
// toolchain with RUSTC_BOOTSTRAP=1, since no nightly can be fetched here and -Z build-std is the
// one unstable flag it needs; pkg/threads-relaxed/: both), the JavaScript API from www/lib/, and
// a package.json with the fields npm and bundlers read.
// Run: node scripts/build_pkg.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const VARIANTS = [
  { dir: 'relaxed', relaxed: true, threads: false },
  { dir: 'threads', relaxed: false, threads: true },
  { dir: 'threads-relaxed', relaxed: true, threads: true },
];
const pkg = join(root, 'pkg');
execFileSync('wasm-pack', ['build', '--target', 'web', '--release', '--mode', 'no-install', '--out-name', 'candlelight', '--no-pack'], {
  cwd: root,
  stdio: 'inherit',
});
for (const variant of VARIANTS) build(variant);
const lib = readdirSync(join(root, 'www/lib'));
for (const f of lib) copyFileSync(join(root, 'www/lib', f), join(pkg, f));

const cargo = readFileSync(join(root, 'Cargo.toml'), 'utf8');
const field = (name) => cargo.match(new RegExp(`^${name} = "(.*)"`, 'm'))[1];
const manifest = {
  name: 'candlelight',
  version: field('version'),
  description: field('description'),
  license: field('license'),
  repository: { type: 'git', url: field('repository') },
  keywords: ['llm', 'webgpu', 'wasm', 'gguf', 'openai', 'deepseek', 'offline', 'inference', 'indexeddb'],
  type: 'module',
  main: './index.js',
  types: './index.d.ts',
  exports: {
    '.': { types: './index.d.ts', import: './index.js', default: './index.js' },
    './worker.js': './worker.js',
    './service-worker.js': { types: './service-worker.d.ts', import: './service-worker.js', default: './service-worker.js' },
    './candlelight_bg.wasm': './candlelight_bg.wasm',
    ...Object.fromEntries(VARIANTS.map(({ dir }) => [`./${dir}/candlelight_bg.wasm`, `./${dir}/candlelight_bg.wasm`])),
    './package.json': './package.json',
  },
  files: [...lib, 'candlelight.js', 'candlelight.d.ts', 'candlelight_bg.wasm', 'candlelight_bg.wasm.d.ts', 'snippets/', ...VARIANTS.map(({ dir }) => `${dir}/`)],
  sideEffects: false,
};
writeFileSync(join(pkg, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`pkg/ ready: candlelight ${manifest.version}`);

// A build besides wasm-pack's, in pkg/<dir>/, from its own target directory (other RUSTFLAGS
// would rebuild the plain one's).
function build({ dir, relaxed, threads }) {
  const target = join(process.env.CARGO_TARGET_DIR || join(root, 'target'), dir);
  const flags = [
    `-C target-feature=+simd128${relaxed ? ',+relaxed-simd' : ''}${threads ? ',+atomics,+bulk-memory' : ''}`,
    '--cfg getrandom_backend="wasm_js"',
  ];
  if (threads) {
    // Shared, imported memory (wasm.js sizes it), and the TLS symbols wasm-bindgen's thread
    // start-up needs. 4 GiB is only the module's upper bound on what wasm.js may declare.
    flags.push(
      '-C link-arg=--shared-memory', '-C link-arg=--import-memory', '-C link-arg=--max-memory=4294967296',
      '-C link-arg=--export=__wasm_init_tls', '-C link-arg=--export=__tls_size',
      '-C link-arg=--export=__tls_align', '-C link-arg=--export=__tls_base',
    );
  }
  const args = ['build', '--release', '--lib', '--target', 'wasm32-unknown-unknown'];
  if (threads) args.push('--features', 'threads', '-Z', 'build-std=panic_abort,std');
  execFileSync('cargo', args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ...(threads ? { RUSTC_BOOTSTRAP: '1' } : {}), RUSTFLAGS: flags.join(' '), CARGO_TARGET_DIR: target },
  });
  rmSync(join(pkg, dir), { recursive: true, force: true });
  execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', join(pkg, dir), '--out-name', 'candlelight', join(target, 'wasm32-unknown-unknown/release/candlelight.wasm')], { cwd: root, stdio: 'inherit' });
}
