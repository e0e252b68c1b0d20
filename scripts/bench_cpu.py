#!/usr/bin/env python3
"""CPU speed of candlelight next to llama.cpp on the same files and thread count, same run.

    cargo run --release --example make_fixtures -- /tmp/fxb bench
    python3 scripts/bench_cpu.py /tmp/fxb [threads]

Prints prefill and decode tokens/s for each Qwen2.5-0.5B-shaped file and the ratio
candlelight / llama.cpp. The two engines alternate, each file twice, and the median is kept.
Needs llama-cpp-python (see README).
"""
import json
import os
import statistics
import subprocess
import sys
import time

import llama_cpp

PROMPT, DECODE, ROUNDS = 128, 64, 2
FILES = ["qwen2.5-0.5b-shape-q4_0", "qwen2.5-0.5b-shape-q8_0", "qwen2.5-0.5b-shape-q4_k_m", "SmolLM2-135M-Instruct.Q4_1"]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def ours(path, threads):
    exe = os.path.join(TARGET, "release", "examples", "bench_cpu")
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.check_output([exe, path, str(PROMPT), str(DECODE), "3"], env=env, text=True)
    return json.loads(out.strip().splitlines()[-1])


def llama(path, threads):
    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    vocab = llm.n_vocab()
    prompt = [(i * 7919 + 13) % vocab for i in range(PROMPT)]
    pre, dec = [], []
    for _ in range(3):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        pre.append(PROMPT / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(DECODE):
            llm.eval([(i * 104729 + 7) % vocab])
        dec.append(DECODE / (time.perf_counter() - t))
    del llm
    return {"engine": "llama.cpp", "prefill_tok_s": statistics.median(pre), "decode_tok_s": statistics.median(dec)}


def main():
    fx = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    subprocess.check_call(["cargo", "build", "--release", "--example", "bench_cpu"], cwd=ROOT)
    print(f"threads={threads} prompt={PROMPT} decode={DECODE} llama.cpp={llama_cpp.__version__}")
    print(f"{'file':28} {'engine':12} {'prefill tok/s':>14} {'decode tok/s':>13}")
    for name in FILES:
        path = os.path.join(fx, name + ".gguf")
        if not os.path.exists(path):
            continue
        runs = {"candlelight": [], "llama.cpp": []}
        for _ in range(ROUNDS):
            runs["candlelight"].append(ours(path, threads))
            runs["llama.cpp"].append(llama(path, threads))
        med = {e: {k: statistics.median(r[k] for r in rs) for k in ("prefill_tok_s", "decode_tok_s")}
               for e, rs in runs.items()}
        for e in ("candlelight", "llama.cpp"):
            print(f"{name:28} {e:12} {med[e]['prefill_tok_s']:14.1f} {med[e]['decode_tok_s']:13.2f}")
        print(f"{name:28} {'ratio':12} {med['candlelight']['prefill_tok_s'] / med['llama.cpp']['prefill_tok_s']:14.2f}"
              f" {med['candlelight']['decode_tok_s'] / med['llama.cpp']['decode_tok_s']:13.2f}")


if __name__ == "__main__":
    main()
