// Makes www/extension/ loadable as an unpacked Manifest V3 extension: copies the npm package's
// own files (pkg/, built first by scripts/build_pkg.mjs) into www/extension/pkg/ and the app icons
// into www/extension/icons/. Nothing is fetched at run time: every script the extension runs is
// in that folder. Run: node scripts/build_extension.mjs
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const ext = join(root, 'www/extension');
const pkg = join(root, 'pkg');
if (!existsSync(join(pkg, 'candlelight_bg.wasm'))) throw new Error('pkg/ is not built: run node scripts/build_pkg.mjs first');

// What runs: every module of the package, the wasm and wasm-bindgen's snippets, and the threaded
// build the package may import (not the types).
const RUNTIME = [...readdirSync(pkg).filter((f) => f.endsWith('.js')), 'candlelight_bg.wasm', 'snippets', 'relaxed', 'threads', 'threads-relaxed'];
rmSync(join(ext, 'pkg'), { recursive: true, force: true });
mkdirSync(join(ext, 'pkg'));
for (const f of RUNTIME) cpSync(join(pkg, f), join(ext, 'pkg', f), { recursive: true, filter: (src) => !src.endsWith('.d.ts') });
mkdirSync(join(ext, 'icons'), { recursive: true });
for (const size of [192, 512]) cpSync(join(root, `www/icons/icon-${size}.png`), join(ext, `icons/icon-${size}.png`));
console.log(`www/extension/ ready: load it unpacked (chrome://extensions, developer mode)`);
