#!/usr/bin/env bash
# The browser tests: generated fixtures, the npm package (pkg/), a model server on 127.0.0.1, the
# wasm-bindgen tests in headless Chromium, then the Playwright tests of the demo and the package.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --release --quiet --example make_fixtures -- fixtures tiny >/dev/null
scripts/real_model.sh
node scripts/build_pkg.mjs

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node scripts/serve.mjs --port "$port" >/dev/null &
server=$!
# The Hugging Face hub emulator (a hub and its CDN on two more ports) for tests/web_hub.rs.
hub_out=$(mktemp)
node scripts/hub.mjs >"$hub_out" &
hub=$!
trap 'kill $server $hub 2>/dev/null || true; rm -f "$hub_out"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/__log" >/dev/null && break; sleep 0.1; done
for _ in $(seq 50); do grep -q '^hub ' "$hub_out" && break; sleep 0.1; done
hub_origin=$(sed -n 's/^hub \([^ ]*\) .*/\1/p' "$hub_out")
[ -n "$hub_origin" ] || { echo "the hub emulator did not start" >&2; exit 1; }

# The wasm-bindgen tests in headless Chromium (flags in webdriver.json), as `wasm-pack test
# --headless --chrome` runs them, but only the library's kernel and CPU format tests and the tests/web_*.rs
# files: the other test files are native. The runner waits this long for one file's tests to
# report, in all: the kernel tests on SwiftShader take ~20 s, the GPU engine file ~25 s.
browser_tests=()
for f in tests/web_*.rs; do browser_tests+=(--test "$(basename "$f" .rs)"); done
CANDLELIGHT_MODEL_SERVER="http://127.0.0.1:$port" CANDLELIGHT_HUB="$hub_origin" WASM_BINDGEN_TEST_TIMEOUT=300 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$(command -v wasm-bindgen-test-runner)" \
  CHROMEDRIVER="$(command -v chromedriver)" WASM_BINDGEN_TEST_ONLY_WEB=1 \
  cargo test --release --target wasm32-unknown-unknown --lib "${browser_tests[@]}"
# The library's CPU tests again in the relaxed and both threaded builds (as build_pkg.mjs builds
# them): the relaxed tiles equal the plain ones bit for bit, products on two pool threads equal
# one thread's.
node scripts/test_variants.mjs
# A test file that hangs fails after 15 minutes (structured.test.mjs takes ~6: 200 answers on
# SwiftShader), and a run that does not exit stops after 40 (all of them take ~12 minutes here),
# so a hang is a failure, never a CI that times out.
timeout --kill-after=10 2400 node --test --test-timeout=900000 tests/web/
