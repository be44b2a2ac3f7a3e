#!/usr/bin/env python3
"""Peak resident size of a stage of a quantized model: for a Q4_K_M GGUF file and an MLX 4-bit
folder (`meshlm synth` + `meshlm quantize`), a process that loads the first, a middle or the last
stage and runs a forward pass (stage_rss) never holds more than

    its share of the file's bytes + its KV cache + 10% + a fixed allowance

at any moment of its life (peak RSS: VmHWM on Linux, see stage_rss_main.cpp). The share is the
stored bytes of the tensors the stage needs, read from the files' headers here (stored_bytes.py),
independently of meshlm. The allowance, measured in the same process and printed:
  * the process before it opens the model (libraries, allocator, thread pool): ~4 MiB;
  * what opening the model costs before any weight is read (ModelFiles::open): a GGUF's decoded
    metadata, mostly the tokenizer's 151k tokens and merges as strings (~25 MiB here, whatever
    the model's size), an MLX folder's safetensors headers (< 1 MiB);
  * ALLOWANCE_MIB for the forward pass's activations and scratch (the last stage's logits are
    4 x vocab f32 = 2.4 MiB; the rest is well under 1 MiB at hidden 512).
Sizes only, no timing: robust on a busy machine.

An MLX matrix is repacked into anonymous memory at load (model_files.cpp); the file's pages of its
codes, scales and biases are released block of rows by block of rows as the copy grows, so a stage
that holds the quantized embedding or head (first and last here) does not hold it twice.

Needs the qwen3 tokenizer (a GGUF carries the vocabulary; exit 77 without it).
usage: stage_peak_rss_quant_test.py MESHLM STAGE_RSS TOKENIZER_DIR WORKDIR"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stored_bytes  # noqa: E402

meshlm, stage_rss, tokdir, work = sys.argv[1:5]
if not os.path.exists(os.path.join(tokdir, "tokenizer.json")):
    print("skipped: no qwen3 tokenizer in " + tokdir)
    sys.exit(77)
LAYERS = 12
ALLOWANCE_MIB = 8
MAX_CONTEXT = 512
os.makedirs(work, exist_ok=True)


def build(name, args):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        shutil.rmtree(path + ".tmp", ignore_errors=True)
        r = subprocess.run(args + [path + ".tmp"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{' '.join(args)} failed: {r.stderr[-2000:]}")
        os.rename(path + ".tmp", path)
    return path


hf = build("rss-quant-hf", [meshlm, "synth", "--arch", "qwen3", "--hidden", "512",
                            "--intermediate", "2048", "--layers", str(LAYERS), "--heads", "8",
                            "--kv-heads", "4", "--head-dim", "64", "--dtype", "bf16",
                            "--threads", "2", "--tokenizer-dir", tokdir, "--out"])
models = {
    "Q4_K_M GGUF": build("rss-quant-Q4_K_M.gguf", [meshlm, "quantize", "--model", hf, "--type",
                                                   "q4_k_m", "--threads", "2", "--out"]),
    "MLX 4-bit": build("rss-quant-mlx4", [meshlm, "quantize", "--model", hf, "--type", "mlx4",
                                          "--threads", "2", "--out"]),
}

# (kind, begin, end) expected to exceed the bound (none today; the mark makes a known gap visible).
KNOWN = set()
ok = True
for kind, model in models.items():
    for begin, end in ((0, 4), (4, 8), (8, 12)):
        r = subprocess.run([stage_rss, model, str(begin), str(end), str(MAX_CONTEXT)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"FAIL: {kind} layers {begin}-{end - 1}: {r.stderr[-1500:]}")
            ok = False
            continue
        m = json.loads(r.stdout)
        share = stored_bytes.stage_bytes(model, begin, end, LAYERS)
        metadata = max(m["opened_rss"] - m["baseline_rss"], 0)
        allowance = m["baseline_peak"] + metadata + ALLOWANCE_MIB * 2**20
        bound = share + m["kv"] + share // 10 + allowance
        within = m["peak"] <= bound
        known = (kind, begin, end) in KNOWN
        verdict = ("XFAIL" if not within else "XPASS (remove the KNOWN mark)") if known else \
                  ("ok" if within else "FAIL")
        ok &= within != known
        mib = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
        print(f"{verdict}: {kind} layers {begin}-{end - 1}: peak RSS {mib(m['peak'])} MiB; bound "
              f"{mib(bound)} = share {mib(share)} + KV {mib(m['kv'])} + 10% {mib(share / 10)} + "
              f"process {mib(m['baseline_peak'])} + opened model {mib(metadata)} + {ALLOWANCE_MIB}; "
              f"beyond process + opened model: {mib(m['peak'] - m['baseline_peak'] - metadata)} MiB = "
              f"{(m['peak'] - m['baseline_peak'] - metadata) / max(share + m['kv'], 1):.3f} x (share + KV); "
              f"RSS at the end {mib(m['rss'])} MiB", flush=True)
sys.exit(0 if ok else 1)
