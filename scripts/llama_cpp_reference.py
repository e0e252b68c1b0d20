#!/usr/bin/env python3
"""Reference values from llama.cpp (through llama-cpp-python) for the generated fixtures.

Writes the two JSON files the Rust tests read; the tests need no Python.

    cargo run --release --example make_fixtures -- /tmp/fx all
    python3 scripts/llama_cpp_reference.py /tmp/fx

llama-cpp-python builds llama.cpp from source; on CPUs that advertise AMX build it with
CFLAGS/CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CMAKE_ARGS="-DLLAMA_CURL=OFF -DGGML_NATIVE=ON".
"""
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp

ARCHS = ["llama", "qwen2", "qwen3"]
QUANTS = ["q4_0", "q8_0", "q4_k_m", "q5_k_m", "q3_k_m", "q2_k", "iq4_xs"]
VOCABS = ["qwen3", "llama3", "deepseek_v3", "llama2"]
SYNTHETIC = {"synthetic_bpe": "tiny-qwen2-q8_0", "synthetic_spm": "tiny-llama-q8_0"}
PROMPT = [10, 200, 33, 400, 5, 600, 77, 123, 321, 500, 250, 42]
STEPS = 32
TOP = 8
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def logits_reference(fx):
    out = {"llama_cpp_version": llama_cpp.__version__, "prompt": PROMPT, "steps": STEPS, "models": {}}
    for arch in ARCHS:
        for q in QUANTS:
            name = f"tiny-{arch}-{q}"
            path = os.path.join(fx, name + ".gguf")
            # F32 KV cache and no flash attention: the arithmetic our CPU backend does.
            llm = llama_cpp.Llama(
                model_path=path, n_ctx=512, n_batch=512, n_threads=2, seed=0, verbose=False, logits_all=True,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, flash_attn=False,
            )
            llm.eval(PROMPT)
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            prefill = [round(float(x), 5) for x in logits]
            tokens, tops = [], []
            for _ in range(STEPS):
                top = np.argsort(-logits, kind="stable")[:TOP]
                tops.append([[int(i), round(float(logits[i]), 5)] for i in top])
                tok = int(np.argmax(logits))
                tokens.append(tok)
                llm.eval([tok])
                logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            out["models"][name] = {"sha256": sha256(path), "prefill_logits": prefill, "greedy": tokens, "top": tops}
            print(name, tokens[:8], file=sys.stderr)
            del llm
    return out


def tokens_reference(fx):
    with open(os.path.join(DATA, "tokenize_strings.json"), encoding="utf-8") as f:
        strings = json.load(f)
    out = {"llama_cpp_version": llama_cpp.__version__, "vocabs": {}}
    files = {v: f"vocab-{v}" for v in VOCABS}
    files.update(SYNTHETIC)
    for vocab, stem in files.items():
        path = os.path.join(fx, stem + ".gguf")
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        ids = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=True) for s in strings]
        bos = llm.tokenize(b"Hello", add_bos=True, special=True)
        out["vocabs"][vocab] = {"file": stem, "sha256": sha256(path), "ids": ids, "hello_with_bos": bos}
        print(vocab, len(ids), file=sys.stderr)
        del llm
    return out


def main():
    fx = sys.argv[1]
    with open(os.path.join(DATA, "llama_cpp_logits.json"), "w") as f:
        json.dump(logits_reference(fx), f, separators=(",", ":"))
    with open(os.path.join(DATA, "llama_cpp_tokens.json"), "w") as f:
        json.dump(tokens_reference(fx), f, separators=(",", ":"))


if __name__ == "__main__":
    main()
