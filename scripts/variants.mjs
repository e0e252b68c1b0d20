// The three wasm builds besides wasm-pack's plain one, and how cargo builds each: for
// scripts/build_pkg.mjs (the package) and scripts/test_variants.mjs (their wasm-bindgen tests),
// which must pass cargo the same flags to share a target directory. Each variant has its own
// (other RUSTFLAGS would rebuild the plain build's dependencies).
//   relaxed          relaxed SIMD's i8 dot product;
//   threads          std rebuilt with atomics and shared memory, rayon on a worker pool, on the
//                    stable toolchain with RUSTC_BOOTSTRAP=1 (no nightly can be fetched here, and
//                    -Z build-std is the one unstable flag it needs);
//   threads-relaxed  both.
import { join } from 'node:path';

export const root = new URL('..', import.meta.url).pathname;

export const VARIANTS = [
  { dir: 'relaxed', relaxed: true, threads: false },
  { dir: 'threads', relaxed: false, threads: true },
  { dir: 'threads-relaxed', relaxed: true, threads: true },
];

/** `cargo <command> …` for a variant: its arguments (before any `--`) and environment. */
export function cargo(command, { dir, relaxed, threads }) {
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
  const args = [command, '--release', '--lib', '--target', 'wasm32-unknown-unknown'];
  if (threads) args.push('--features', 'threads', '-Z', 'build-std=panic_abort,std');
  const target = join(process.env.CARGO_TARGET_DIR || join(root, 'target'), dir);
  return {
    args,
    env: { ...process.env, ...(threads ? { RUSTC_BOOTSTRAP: '1' } : {}), RUSTFLAGS: flags.join(' '), CARGO_TARGET_DIR: target },
    wasm: join(target, 'wasm32-unknown-unknown/release/candlelight.wasm'),
  };
}
