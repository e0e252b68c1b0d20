#!/usr/bin/env bash
# GPU decode speed on a lent GPU machine (the `device` tool: one call, 15 minutes in all).
#
#   scripts/device_bench.sh --prepare   # here: binaries and Vulkan loader into bench-bin/ (carried)
#   scripts/device_bench.sh             # there: GPU tests, fixtures, then bench_gpu via Vulkan
#
# On the GPU machine it first runs the kernel tests, tests/gpu_matches_cpu.rs and
# tests/gpu_step_is_one_pass.rs on the real GPU, then generates the 0.5B-shaped Q4_0 and Q8_0
# fixtures and the 1.5B-shaped Q4_0, runs bench_gpu --profile on each (GPU and CPU in the same
# run; the 0.5B Q4_0 also decodes after a 4096-token prompt) and prints decode tok/s, the
# achieved weight bandwidth as a fraction of the GPU's specified memory bandwidth, dispatches
# and CPU encode time per token, GPU time per kernel class, and the issue's goals met or not. Binaries come from bench-bin/ when they run there; otherwise
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
  cargo test --release --no-run --lib --test gpu_matches_cpu --test gpu_step_is_one_pass --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | while read -r exe; do
      case "$(basename "$exe")" in
        candlelight-*) cp "$exe" bench-bin/test_kernels ;;
        gpu_matches_cpu-*) cp "$exe" bench-bin/test_gpu_matches_cpu ;;
        gpu_step_is_one_pass-*) cp "$exe" bench-bin/test_gpu_step_is_one_pass ;;
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
  echo "== tests/gpu_step_is_one_pass.rs on this GPU"
  bench-bin/test_gpu_step_is_one_pass 2>&1 | tee "$out/gpu_step_is_one_pass.txt" | grep -v '^$' | tail -4
fi

time "$bin/make_fixtures" "$dir" gpu-bench
# PROMPT, DECODE, REPEATS and DEEP shrink a trial run on a machine without a real GPU.
bench() {
  "$bin/bench_gpu" "$dir/$1.gguf" "${PROMPT:-128}" "${DECODE:-128}" "${REPEATS:-3}" --profile \
    ${spec:+--spec-gbps $spec} "${@:2}" | tee -a "$out/device_bench.txt"
}
bench qwen2.5-0.5b-shape-q4_0 --deep "${DEEP:-4096}"
bench qwen2.5-0.5b-shape-q8_0
bench qwen2.5-1.5b-shape-q4_0

# The goals (issue 14): 0.5B Q4_0 decode at least 3x the 158 tok/s measured before the fused
# kernels; the 1.5B Q4_0 at 30 % or more of the specified bandwidth; decode after 4096 positions
# within 1.5x of decode after the short prompt.
field() { grep "\"file\":\"$1.gguf\"" "$out/device_bench.txt" | tail -1 | grep -o "\"$2\":[0-9.]*" | cut -d: -f2; }
echo "== goals"
awk -v d="$(field qwen2.5-0.5b-shape-q4_0 gpu_decode_tok_s)" 'BEGIN { printf "0.5B Q4_0 decode %.1f tok/s: %.2fx of 158 (goal 3x): %s\n", d, d / 158, (d >= 474 ? "met" : "missed") }'
awk -v r="$(field qwen2.5-0.5b-shape-q4_0 short_over_deep_decode)" 'BEGIN { printf "decode after '"${PROMPT:-128}"' positions / after '"${DEEP:-4096}"': %.2fx (goal within 1.5x): %s\n", r, (r <= 1.5 ? "met" : "missed") }'
f=$(field qwen2.5-1.5b-shape-q4_0 fraction_of_spec)
[ -n "$f" ] && awk -v f="$f" 'BEGIN { printf "1.5B Q4_0 weight bandwidth %.1f%% of spec (goal 30%%): %s\n", 100 * f, (f >= 0.3 ? "met" : "missed") }'
true
