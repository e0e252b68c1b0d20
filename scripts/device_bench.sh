#!/usr/bin/env bash
# GPU decode speed on a lent GPU machine (the `device` tool: one call, 15 minutes in all).
#
#   scripts/device_bench.sh --prepare   # here: build the two binaries into bench-bin/ (carried)
#   scripts/device_bench.sh             # there: fixtures, then bench_gpu on the real GPU via Vulkan
#
# On the GPU machine it generates the 0.5B-shaped Q4_0 and Q8_0 fixtures, runs bench_gpu on each
# (GPU and CPU in the same run) and prints decode tok/s and the achieved weight bandwidth as a
# fraction of the GPU's specified memory bandwidth. Binaries come from bench-bin/ when they run
# there; otherwise it builds natively with cargo (offline: the machine reaches no registry).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --prepare ]; then
  cargo build --release --example bench_gpu --example make_fixtures
  mkdir -p bench-bin
  for b in bench_gpu make_fixtures; do
    cp "${CARGO_TARGET_DIR:-target}/release/examples/$b" bench-bin/
    strip bench-bin/$b 2>/dev/null || true
  done
  ls -la bench-bin
  exit 0
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Mesa's and NVIDIA's Vulkan loaders want a runtime dir; without one they print errors.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$dir}"

bin=bench-bin
if ! "$bin/make_fixtures" "$dir" none >/dev/null 2>&1; then
  echo "bench-bin/ does not run here; building natively"
  cargo build --release --offline --example bench_gpu --example make_fixtures
  bin="${CARGO_TARGET_DIR:-target}/release/examples"
fi

name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv 2>/dev/null || echo "no nvidia-smi"
# Memory bandwidth by specification, GB/s.
case "$name" in
  *H200*) spec=4800 ;;
  *H100*PCIe*) spec=2000 ;;
  *H100*) spec=3350 ;;
  *A100*80GB*) spec=2039 ;;
  *A100*) spec=1555 ;;
  *L40S*) spec=864 ;;
  *) spec="" ;;
esac
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null || true

time "$bin/make_fixtures" "$dir" gpu-bench
out="${OUT:-$dir}"
# PROMPT, DECODE and REPEATS shrink a trial run on a machine without a real GPU.
for q in q4_0 q8_0; do
  WGPU_BACKEND=vulkan "$bin/bench_gpu" "$dir/qwen2.5-0.5b-shape-$q.gguf" "${PROMPT:-128}" "${DECODE:-128}" "${REPEATS:-3}" \
    ${spec:+--spec-gbps $spec} | tee -a "$out/device_bench.txt"
done
