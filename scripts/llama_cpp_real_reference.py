#!/usr/bin/env python3
"""llama.cpp's reference for the real SmolLM2-135M-Instruct (Q4_1), teacher-forced over a fixed
English passage: at every position its top logits and log-sum-exp (not the raw logits), and how
far llama.cpp is from itself with an f16 KV cache (its default) against an f32 one.

Writes tests/data/smollm2_llama_cpp.json, which tests/real_model_logits.rs reads (no Python
needed there).

    scripts/real_model.sh
    python3 scripts/llama_cpp_real_reference.py fixtures/SmolLM2-135M-Instruct.Q4_1.gguf

llama-cpp-python 0.3.36 builds llama.cpp from source: CFLAGS/CXXFLAGS="-mno-amx-tile -mno-amx-int8
-mno-amx-bf16" CMAKE_ARGS="-DLLAMA_CURL=OFF -DGGML_NATIVE=ON".
"""
import hashlib
import json
import os
import sys

import numpy as np
import llama_cpp

TOP = 16
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "smollm2_llama_cpp.json")
PASSAGE = (
    "On a clear day the sky looks blue because air scatters the short wavelengths of sunlight "
    "far more than the long ones. Near the horizon the light has crossed much more air, so the "
    "blue is washed out and the sky turns pale, almost white. At sunset the sun is low, its "
    "light travels through the thickest part of the atmosphere, and most of the blue is "
    "scattered away before it reaches us: what is left is orange and red. Clouds are white "
    "because their droplets are large enough to scatter every colour about equally. Sailors, "
    "farmers and pilots have read the sky for centuries. A red sky in the evening often means "
    "dry air to the west, where tomorrow's weather comes from, while a ring around the moon "
    "warns of high thin clouds that can come before rain. Today satellites and weather models "
    "do most of that work, but the old rules still hold often enough to be worth knowing. If "
    "you want to see the effect for yourself, shine a torch through a glass of water with a "
    "few drops of milk in it: from the side the water looks faintly blue, and the light that "
    "comes straight through looks yellow or orange, like a small sunset in a kitchen. The same "
    "physics explains why distant mountains look blue and why the sky on Mars, full of fine "
    "dust, is a dusty pink by day and blue around the setting sun."
)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run(path, tokens, kv, batch=True):
    """Logits at every position: the passage in one batch, or one token per step."""
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=1024, n_batch=1024, n_threads=1, seed=0, verbose=False, logits_all=True,
        type_k=kv, type_v=kv, flash_attn=False,
    )
    if batch:
        llm.eval(tokens)
    else:
        for t in tokens:
            llm.eval([t])
    scores = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    del llm
    return scores


def log_softmax(x):
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def kl_top(ref_top_ids, ref_logp, other_logp):
    """KL(ref || other) over ref's top ids plus one bucket for the rest, as the Rust test computes it."""
    p = np.exp(ref_logp[ref_top_ids])
    q = np.exp(other_logp[ref_top_ids])
    kl = float((p * (ref_logp[ref_top_ids] - other_logp[ref_top_ids])).sum())
    pt, qt = max(1.0 - p.sum(), 1e-12), max(1.0 - q.sum(), 1e-12)
    return kl + pt * np.log(pt / qt)


def divergence(ref_scores, other_scores, n):
    """Mean KL(ref || other) as the Rust test computes it, and the top-1 misses with ref's margin."""
    kls, margins = [], []
    for i in range(n):
        top = np.argsort(-ref_scores[i], kind="stable")[:TOP]
        kls.append(kl_top(top, log_softmax(ref_scores[i]), log_softmax(other_scores[i])))
        if np.argmax(other_scores[i]) != top[0]:
            margins.append(round(float(ref_scores[i][top[0]] - ref_scores[i][top[1]]), 4))
    return {"mean_kl": round(float(np.mean(kls)), 6), "top1_misses": len(margins), "miss_margins": sorted(margins), "positions": n}


def main(path):
    probe = llama_cpp.Llama(model_path=path, n_ctx=1024, verbose=False, vocab_only=True)
    tokens = probe.tokenize(PASSAGE.encode(), add_bos=True, special=False)
    del probe
    assert len(tokens) >= 257, len(tokens)
    f32 = run(path, tokens, llama_cpp.GGML_TYPE_F32)
    f16 = run(path, tokens, llama_cpp.GGML_TYPE_F16)
    steps = run(path, tokens, llama_cpp.GGML_TYPE_F32, batch=False)
    positions = []
    # Position i holds the logits after tokens[..=i]; the last has no next token to score.
    for i in range(len(tokens) - 1):
        top = np.argsort(-f32[i], kind="stable")[:TOP]
        m = f32[i].max()
        lse = float(m + np.log(np.exp(f32[i] - m).sum()))
        positions.append({"top": [[int(t), round(float(f32[i][t]), 4)] for t in top], "lse": round(lse, 4)})
    out = {
        "llama_cpp_version": llama_cpp.__version__,
        "file": os.path.basename(path),
        "sha256": sha256(path),
        "threads": 1,
        "kv_cache": "f32 (the reference); f16 for the self-divergence",
        "tokens": tokens,
        "positions": positions,
        # llama.cpp against itself: the bar (f16 KV cache against f32), and its one-token
        # steps against its batch (our CPU backend is scored one token per step).
        "self_divergence": divergence(f32, f16, len(positions)),
        "self_divergence_steps": divergence(f32, steps, len(positions)),
    }
    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"{len(positions)} positions; llama.cpp f16 KV: {out['self_divergence']}; one-token steps: {out['self_divergence_steps']}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
