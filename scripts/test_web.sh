#!/usr/bin/env bash
# The browser tests: generated fixtures, the npm package (pkg/), a model server on 127.0.0.1, the
# wasm-bindgen tests in headless Chromium, then the Playwright tests of the demo and the package.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo run --release --quiet --example make_fixtures -- fixtures tiny >/dev/null
node scripts/build_pkg.mjs

port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
node scripts/serve.mjs --port "$port" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/__log" >/dev/null && break; sleep 0.1; done

CANDLELIGHT_MODEL_SERVER="http://127.0.0.1:$port" \
  wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" --mode no-install --release
node --test tests/web/
