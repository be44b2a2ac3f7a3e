#!/usr/bin/python3
"""Reference vectors for meshlm's block-quantization code (src/formats/quants*.cpp).

For every GGUF block type meshlm reads, writes to tests/formats/data/quants/:
  <TYPE>.bin      raw blocks
  <TYPE>.fnv      the expected decoding: per block, the FNV-1a 64 hash (little-endian u64) of the
                  block's block_elems f32 values (little-endian bytes), as gguf-py decodes it
  <TYPE>.src.f32  (the types meshlm quantizes) f32 inputs whose reference quantization is the
                  first len/block_elems blocks of <TYPE>.bin: gguf-py's for Q4_0, Q4_1, Q5_0,
                  Q5_1, Q8_0; ggml's reference quantizers (quantize_row_*_ref in libggml-base,
                  what llama-quantize runs without an importance matrix) for Q2_K..Q6_K, which
                  gguf-py cannot quantize. The rest of <TYPE>.bin is random bytes with finite,
                  moderate scale fields.
tests/formats/quants_test.cpp decodes <TYPE>.bin and compares hashes (bit for bit), and
quantizes <TYPE>.src.f32 and compares bytes.

The reference is gguf-py from a llama.cpp checkout (its numpy dequantizers are the reference for
every type; ggml's own C dequantizers evaluate in the same order). The K-quant encodings need
ggml's base library built in that checkout:

  cmake -S /work/llama.cpp-src -B /work/llama.cpp-src/build -G Ninja &&
    ninja -C /work/llama.cpp-src/build ggml-base

Run with a Python that has numpy (Debian's /usr/bin/python3 does):

  /usr/bin/python3 scripts/gen_quant_vectors.py --llama-cpp /work/llama.cpp-src

Where gguf-py and ggml both quantize (Q4_0..Q8_0) it also prints the blocks on which they
disagree (gguf-py's Q4_1/Q5_1 take numpy's min(), whose sign for a minimum of +-0 is not ggml's).

The output is deterministic for a given gguf-py and numpy (seeded); CI has no llama.cpp checkout,
so the files are committed.
"""

import argparse
import os
import sys

import numpy as np

# name, blocks quantized from floats (by gguf-py, or for K-quants by ggml), blocks of random bytes
TYPES = [
    ("Q4_0", 320, 64),
    ("Q4_1", 320, 64),
    ("Q5_0", 320, 64),
    ("Q5_1", 320, 64),
    ("Q8_0", 320, 64),
    ("Q2_K", 40, 216),
    ("Q3_K", 40, 216),
    ("Q4_K", 40, 216),
    ("Q5_K", 40, 216),
    ("Q6_K", 40, 216),
    ("IQ4_NL", 0, 384),
    ("IQ4_XS", 0, 256),
    ("MXFP4", 0, 384),
]

# Byte offsets of the f16 scale fields in each block (ggml-common.h); MXFP4's E8M0 exponent is
# handled apart.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0],
}


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def float_blocks(rng: np.random.Generator, n_blocks: int, block: int) -> np.ndarray:
    """Inputs of several kinds, one kind per block, cycling."""
    out = np.empty((n_blocks, block), dtype=np.float32)
    for i in range(n_blocks):
        kind = i % 10
        if kind == 0:
            x = rng.standard_normal(block)
        elif kind == 1:  # gaussian over a wide range of magnitudes
            x = rng.standard_normal(block) * 10.0 ** rng.uniform(-6, 3)
        elif kind == 2:
            x = np.zeros(block)
        elif kind == 3:  # all equal
            x = np.full(block, rng.standard_normal() * 10.0 ** rng.uniform(-3, 2))
        elif kind == 4:  # a large outlier
            x = rng.standard_normal(block) * 0.01
            x[rng.integers(block)] = rng.choice([-1, 1]) * rng.uniform(10, 1000)
        elif kind == 5:  # one sign only (exercises the minimum of Q4_1/Q5_1)
            x = np.abs(rng.standard_normal(block)) + rng.uniform(0, 5)
            if rng.integers(2):
                x = -x
        elif kind == 6:  # sparse
            x = rng.standard_normal(block) * (rng.random(block) < 0.1)
        elif kind == 7:  # equal and opposite extremes (the first one must win)
            x = rng.uniform(-1, 1, block)
            a, b = rng.choice(block, 2, replace=False)
            x[a], x[b] = 2.5, -2.5
        elif kind == 8:  # small integers: many values land exactly on rounding boundaries
            x = rng.integers(-16, 17, block) * 0.5
        else:
            x = rng.uniform(-1, 1, block) * 60000 / 16  # scales near the top of f16's range
        out[i] = x.astype(np.float32)
    return out


def random_blocks(rng: np.random.Generator, name: str, n_blocks: int, type_size: int) -> np.ndarray:
    """Random bytes with every scale field a finite, moderate value (zero and subnormal f16
    included; |scale| < 64)."""
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    if name == "MXFP4":
        # E8M0 exponents 0..200: subnormal halves (0, 1) through 2^72.
        b[:, 0] = rng.integers(0, 201, size=n_blocks)
        return b
    for off in F16_FIELDS[name]:
        exp = rng.integers(0, 21, size=n_blocks).astype(np.uint16)  # f16 exponent field 0..20
        man = rng.integers(0, 1024, size=n_blocks).astype(np.uint16)
        sign = rng.integers(0, 2, size=n_blocks).astype(np.uint16)
        h = sign << 15 | exp << 10 | man
        h[::17] = 0  # some zero scales
        b[:, off:off + 2] = h.astype("<u2").view(np.uint8).reshape(n_blocks, 2)
    return b


def ggml_quantize(lib, name: str, src: np.ndarray, type_size: int) -> np.ndarray:
    """quantize_row_<type>_ref from libggml-base over the rows of src."""
    import ctypes
    fn = getattr(lib, f"quantize_row_{name.lower().replace('_k', '_K')}_ref")
    x = np.ascontiguousarray(src, dtype=np.float32).ravel()
    out = np.zeros(x.size // src.shape[-1] * type_size, dtype=np.uint8)
    fn(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size))
    return out.reshape(-1, type_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default=os.environ.get("LLAMA_CPP_SRC", "/work/llama.cpp-src"),
                    help="llama.cpp checkout (its gguf-py is the reference)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "tests", "formats", "data", "quants"))
    ap.add_argument("--ggml-lib", help="libggml-base.so (default: <llama-cpp>/build/bin/)")
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()

    sys.path.insert(0, os.path.join(args.llama_cpp, "gguf-py"))
    from gguf import quants
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    import ctypes
    lib_path = args.ggml_lib or os.path.join(args.llama_cpp, "build", "bin", "libggml-base.so")
    if not os.path.exists(lib_path):
        sys.exit(f"{lib_path} not found: build ggml-base in the llama.cpp checkout (see --help)")
    ggml = ctypes.CDLL(lib_path)

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    for name, n_quantized, n_random in TYPES:
        qtype = GGMLQuantizationType[name]
        block, type_size = GGML_QUANT_SIZES[qtype]
        parts = []
        if n_quantized:
            src = float_blocks(rng, n_quantized, block)
            by_ggml = ggml_quantize(ggml, name, src, type_size)
            if name.endswith("_K"):
                parts.append(by_ggml)
            else:
                by_gguf_py = quants.quantize(src, qtype).reshape(n_quantized, type_size)
                parts.append(by_gguf_py)
                differ = np.nonzero((by_ggml != by_gguf_py).any(axis=1))[0]
                if len(differ):
                    print(f"{name}: gguf-py and ggml quantize blocks {differ.tolist()} differently")
            src.astype("<f4").tofile(os.path.join(args.out, f"{name}.src.f32"))
        parts.append(random_blocks(rng, name, n_random, type_size))
        blocks = np.concatenate(parts, axis=0)
        decoded = quants.dequantize(blocks, qtype).reshape(-1, block).astype("<f4")
        hashes = np.array([fnv1a64(row.tobytes()) for row in decoded], dtype="<u8")
        blocks.tofile(os.path.join(args.out, f"{name}.bin"))
        hashes.tofile(os.path.join(args.out, f"{name}.fnv"))
        by = "ggml" if name.endswith("_K") else "gguf-py"
        print(f"{name}: {len(blocks)} blocks ({n_quantized} quantized by {by}), "
              f"{int(np.isfinite(decoded).sum())}/{decoded.size} finite values")


if __name__ == "__main__":
    main()
