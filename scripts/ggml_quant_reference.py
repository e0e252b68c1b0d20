#!/usr/bin/env python3
"""ggml's own IQ4_NL and IQ4_XS, the formats candle does not have: seeded weights quantized by
ggml's quantizer, ggml's dequantization of those blocks, and ggml's CPU dot products of each row
with activations (quantized to the format's dot type, Q8_0 or Q8_K, by ggml itself).

Writes tests/data/ggml_iq4.json, which src/engine/iq4.rs's tests and the GPU kernel tests read
(no Python needed there). Every array is little-endian bytes in hex: f32 for values.

    python3 scripts/ggml_quant_reference.py

It loads the libggml that llama-cpp-python 0.3.36 built (see scripts/llama_cpp_real_reference.py).
"""
import ctypes
import json
import os

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "ggml_iq4.json")
LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ROWS, K, ACTS = 4, 512, 2
TYPES = {"IQ4_NL": (20, 18, 32), "IQ4_XS": (23, 136, 256)}

base = ctypes.CDLL(os.path.join(LIB, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(os.path.join(LIB, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)

FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(
    None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
)


class CpuTraits(ctypes.Structure):
    _fields_ = [("from_float", FROM_FLOAT), ("vec_dot", VEC_DOT), ("vec_dot_type", ctypes.c_int),
                ("nrows", ctypes.c_int64)]


cpu.ggml_cpu_init.restype = None
cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(CpuTraits)
cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
base.ggml_quantize_chunk.restype = ctypes.c_size_t
base.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
cpu.ggml_cpu_init()

# Q8_0 and Q8_K block sizes, for the activations' buffers.
DOT_BYTES = {8: (34, 32), 15: (292, 256)}


def hexf(a):
    return np.asarray(a, dtype="<f4").tobytes().hex()


def main():
    rng = np.random.default_rng(20261202)
    w = (rng.standard_normal((ROWS, K)) * 0.05).astype(np.float32)
    w[1, 40] = 0.9  # an outlier: one block's scale set by a single value
    w[2, 64:96] = 0.0  # an all-zero block
    w[3, :] *= np.linspace(0.1, 3.0, K, dtype=np.float32)  # scales that vary along the row
    x = (rng.standard_normal((ACTS, K)) * 2.0).astype(np.float32)
    out = {"rows": ROWS, "k": K, "acts": ACTS, "weights": hexf(w), "x": hexf(x), "types": []}
    for name, (tid, type_size, block) in TYPES.items():
        row_bytes = K // block * type_size
        dst = ctypes.create_string_buffer(ROWS * row_bytes)
        n = base.ggml_quantize_chunk(tid, w.ctypes.data, dst, 0, ROWS, K, None)
        assert n == ROWS * row_bytes, (name, n)
        deq = np.zeros((ROWS, K), dtype=np.float32)
        fn = getattr(base, "dequantize_row_" + name.lower())
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn(dst, deq.ctypes.data, ROWS * K)
        traits = cpu.ggml_get_type_traits_cpu(tid).contents
        dot_type = traits.vec_dot_type
        act_block, act_len = DOT_BYTES[dot_type]
        dots = np.zeros((ACTS, ROWS), dtype=np.float32)
        from_float = cpu.ggml_get_type_traits_cpu(dot_type).contents.from_float
        for a in range(ACTS):
            xa = np.ascontiguousarray(x[a])
            xq = ctypes.create_string_buffer(K // act_len * act_block)
            from_float(xa.ctypes.data, ctypes.cast(xq, ctypes.c_void_p), K)
            for r in range(ROWS):
                s = ctypes.c_float()
                row = ctypes.c_void_p(ctypes.addressof(dst) + r * row_bytes)
                traits.vec_dot(K, ctypes.byref(s), 0, row, 0, ctypes.cast(xq, ctypes.c_void_p), 0, 1)
                dots[a, r] = s.value
        out["types"].append({
            "name": name,
            "id": tid,
            "blocks": dst.raw.hex(),
            "dequantized": hexf(deq),
            "dot_type": {8: "Q8_0", 15: "Q8_K"}[dot_type],
            "dots": hexf(dots),
        })
        err = float(np.sqrt(np.mean((deq - w) ** 2)))
        print(f"{name}: {n} bytes, rms error {err:.6f}, dot type {out['types'][-1]['dot_type']}")
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
