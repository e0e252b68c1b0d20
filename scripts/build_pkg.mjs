// Builds pkg/, the npm package: wasm-pack's output (ESM for the web target, the .wasm, the inline
// JS snippets) plus the JavaScript API from www/lib/, and a package.json with the fields npm and
// bundlers read. Run: node scripts/build_pkg.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const pkg = join(root, 'pkg');
execFileSync('wasm-pack', ['build', '--target', 'web', '--release', '--mode', 'no-install', '--out-name', 'candlelight', '--no-pack'], {
  cwd: root,
  stdio: 'inherit',
});
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
    './package.json': './package.json',
  },
  files: [...lib, 'candlelight.js', 'candlelight.d.ts', 'candlelight_bg.wasm', 'candlelight_bg.wasm.d.ts', 'snippets/'],
  sideEffects: false,
};
writeFileSync(join(pkg, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`pkg/ ready: candlelight ${manifest.version}`);
