// Builds pkg/, the npm package: wasm-pack's output (ESM for the web target, the .wasm, the inline
// JS snippets), the other three builds wasm.js picks from (variants.mjs: pkg/relaxed/,
// pkg/threads/, pkg/threads-relaxed/), the JavaScript API from www/lib/, and a package.json with
// the fields npm and bundlers read.
// Run: node scripts/build_pkg.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VARIANTS, cargo, root } from './variants.mjs';

const pkg = join(root, 'pkg');
execFileSync('wasm-pack', ['build', '--target', 'web', '--release', '--mode', 'no-install', '--out-name', 'candlelight', '--no-pack'], {
  cwd: root,
  stdio: 'inherit',
});
for (const variant of VARIANTS) build(variant);
const lib = readdirSync(join(root, 'www/lib'));
for (const f of lib) copyFileSync(join(root, 'www/lib', f), join(pkg, f));

const manifestToml = readFileSync(join(root, 'Cargo.toml'), 'utf8');
const field = (name) => manifestToml.match(new RegExp(`^${name} = "(.*)"`, 'm'))[1];
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

// A build besides wasm-pack's, in pkg/<dir>/.
function build(variant) {
  const { args, env, wasm } = cargo('build', variant);
  execFileSync('cargo', args, { cwd: root, stdio: 'inherit', env });
  rmSync(join(pkg, variant.dir), { recursive: true, force: true });
  execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', join(pkg, variant.dir), '--out-name', 'candlelight', wasm], { cwd: root, stdio: 'inherit' });
}
