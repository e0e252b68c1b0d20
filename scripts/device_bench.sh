#!/usr/bin/env bash
# GPU decode speed on a lent GPU machine (the `device` tool: one call, 15 minutes in all).
#
#   scripts/device_bench.sh --prepare   # here: binaries and Vulkan loader into bench-bin/ (carried)
#   scripts/device_bench.sh             # there: GPU tests, fixtures, then bench_gpu via Vulkan
#
# On the GPU machine it first runs the kernel tests and tests/gpu_matches_cpu.rs on the real GPU,
# then generates the 0.5B-shaped Q4_0 and Q8_0 fixtures, runs bench_gpu on each (GPU and CPU in
# the same run) and prints decode tok/s and the achieved weight bandwidth as a fraction of the
# GPU's specified memory bandwidth. Binaries come from bench-bin/ when they run there; otherwise
# it builds natively with cargo (offline: the machine reaches no registry).
#
# The lent machines have NVIDIA's Vulkan driver but no Vulkan loader (libvulkan.so.1) and no
# glvnd libraries the driver links against, so --prepare downloads those Debian packages into
# bench-bin/gl and the run unpacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --prepare ]; then
  cargo build --release --example bench_gpu --example make_fixtures
  mkdir -p bench-bin/gl
  for b in bench_gpu make_fixtures; do
    cp "${CARGO_TARGET_DIR:-target}/release/examples/$b" bench-bin/
  done
  # The GPU tests: the lib's kernel tests and tests/gpu_matches_cpu.rs, as built test binaries.
  cargo test --release --no-run --lib --test gpu_matches_cpu --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | while read -r exe; do
      case "$(basename "$exe")" in
        candlelight-*) cp "$exe" bench-bin/test_kernels ;;
        gpu_matches_cpu-*) cp "$exe" bench-bin/test_gpu_matches_cpu ;;
      esac
    done
  strip bench-bin/* 2>/dev/null || true
  lists=$(mktemp -d); mkdir -p "$lists/partial"
  apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  apt-get "${apt[@]}" update >/dev/null
  (cd bench-bin/gl && apt-get "${apt[@]}" download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 \
    libgles2 libopengl0 libx11-6 libxext6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 2>&1 | grep -v unsandboxed || true)
  rm -rf "$lists"
  ls -la bench-bin bench-bin/gl
  exit 0
fi

# Vulkan loader and glvnd, where the machine lacks them (each library only if missing).
for deb in bench-bin/gl/*.deb; do
  [ -e "$deb" ] || continue
  # The package's soname link, as "libX.so.N -> libX.so.N.M.K".
  lib=$(dpkg -c "$deb" | grep -oE '[^/ ]+\.so\.[0-9]+ ->' | head -1 | cut -d' ' -f1 || true)
  [ -n "$lib" ] && ldconfig -p | grep -q "^\s*$lib " && continue
  dpkg -x "$deb" /
done
ldconfig 2>/dev/null || true
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
export WGPU_BACKEND=vulkan

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

out="${OUT:-$dir}"
if [ -x bench-bin/test_kernels ] && [ -z "${NO_TESTS:-}" ]; then
  echo "== kernel tests on this GPU"
  bench-bin/test_kernels gpu --test-threads=1 --nocapture 2>&1 | tee "$out/kernel_tests.txt" | grep -v '^$' | tail -10
  echo "== tests/gpu_matches_cpu.rs on this GPU"
  bench-bin/test_gpu_matches_cpu --test-threads=2 --nocapture 2>&1 | tee "$out/gpu_matches_cpu.txt" | grep -v '^$' | tail -10
fi

time "$bin/make_fixtures" "$dir" gpu-bench
# PROMPT, DECODE and REPEATS shrink a trial run on a machine without a real GPU.
for q in q4_0 q8_0; do
  "$bin/bench_gpu" "$dir/qwen2.5-0.5b-shape-$q.gguf" "${PROMPT:-128}" "${DECODE:-128}" "${REPEATS:-3}" \
    ${spec:+--spec-gbps $spec} | tee -a "$out/device_bench.txt"
done
