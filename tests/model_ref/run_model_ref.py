#!/usr/bin/python3
"""Engine vs. independent float64 reference, per architecture.

For each case: `meshlm synth` a tiny model into a temporary folder, run
`meshlm generate --prompt-ids ... -n 16 --ids --ignore-eos --logits-out L.bin`, run
tests/reference/hf_reference.py's greedy generation on the same folder (in-process), and require
  * the same 16 greedy ids (a divergence is accepted only at a near tie: where the reference's
    logits for the two tokens differ by less than the tolerance), and
  * max |engine logit - reference logit| < tol over the rows before any divergence
    (tol 1e-3 for f32 weights, 1e-2 for bf16 / f16 weights).

Usage: run_model_ref.py --meshlm PATH [--arch qwen3|qwen2|llama|mistral|qwen3_moe|qwen2_moe|mixtral|all] [--work DIR] [--keep]
Exit status 0 pass, 1 fail, 77 skip (no torch / numpy in this python).
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import torch
except ImportError as e:  # pyenv / venv pythons usually lack Debian's python3-torch
    print(f"SKIP: {e} (needs Debian's python3-torch and python3-numpy)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import hf_reference  # noqa: E402

N_GEN = 16
N_PROMPT = 20
VOCAB = 512
# Shape per architecture. Qwen3 and Mistral use head_dim != hidden / heads (q dim 256 and 192
# against hidden 128), as real Qwen3-0.6B and Mistral-Nemo do; Qwen2 cannot (no head_dim key).
SHAPES = {
    "qwen3": dict(hidden=128, layers=3, heads=4, kv_heads=2, head_dim=64, intermediate=256),
    "qwen2": dict(hidden=128, layers=3, heads=4, kv_heads=2, head_dim=32, intermediate=256),
    "llama": dict(hidden=128, layers=3, heads=4, kv_heads=2, head_dim=32, intermediate=256),
    "mistral": dict(hidden=128, layers=3, heads=4, kv_heads=1, head_dim=48, intermediate=256),
    # 8 experts, 2 per token, layer 1 dense (dense and MoE layers in one model).
    "qwen3_moe": dict(hidden=128, layers=3, heads=4, kv_heads=2, head_dim=64, intermediate=256,
                      experts=8, experts_per_tok=2, moe_intermediate=64, mlp_only_layers=1),
    # Qwen2-MoE: 6 experts, 2 per token, a shared expert of 96, layer 0 dense.
    "qwen2_moe": dict(hidden=128, layers=3, heads=4, kv_heads=2, head_dim=32, intermediate=256,
                      experts=6, experts_per_tok=2, moe_intermediate=64, mlp_only_layers=0,
                      shared_expert_intermediate=96),
    # Mixtral: 4 experts of intermediate_size 96, 2 per token, in every layer; kv_heads 1 and
    # head_dim 48 (!= hidden / heads) as for Mistral.
    "mixtral": dict(hidden=128, layers=3, heads=4, kv_heads=1, head_dim=48, intermediate=256,
                    experts=4, experts_per_tok=2, moe_intermediate=96),
}
# (dtype, untied, shards) per case; every arch gets f32 and bf16, tied and untied.
CASES = [("f32", False, 1), ("f32", True, 2), ("bf16", False, 1), ("bf16", True, 1)]
# Extra cases; a 4th element adds synth options. Windows of 7 and 5 positions, shorter than the
# prompt: Mistral's in every layer, Qwen3's from layer 1 on (max_window_layers), Mixtral's too.
EXTRA = {"qwen3": [("f16", False, 1), ("f32", False, 1, ["--sliding-window", "7", "--max-window-layers", "1"])],
         "llama": [("bf16", True, 3)],
         "mistral": [("f32", False, 1, ["--sliding-window", "7"])],
         "mixtral": [("f32", True, 1, ["--sliding-window", "5"])]}
TOL = {"f32": 1e-3, "bf16": 1e-2, "f16": 1e-2}


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def check_case(meshlm, arch, dtype, untied, shards, work, extra=()):
    name = f"{arch}-{dtype}-{'untied' if untied else 'tied'}" + (f"-{shards}shards" if shards > 1 else "")
    if extra:
        name += "-" + "".join(x.lstrip("-") for x in extra).replace("window", "w")
    model_dir = os.path.join(work, name)
    shape = SHAPES[arch]
    seed = 1000 + sum(map(ord, name))
    cmd = [meshlm, "synth", "--arch", arch, "--out", model_dir, "--dtype", dtype, "--vocab", str(VOCAB),
           "--seed", str(seed), "--shards", str(shards)]
    for k, v in shape.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    if untied:
        cmd.append("--untied")
    run(cmd + list(extra))

    rng = random.Random(seed)
    prompt = [rng.randrange(VOCAB) for _ in range(N_PROMPT)]
    assert len(set(prompt)) > N_PROMPT // 2, prompt  # varied: identical tokens hide attention bugs
    logits_path = os.path.join(work, name + ".logits.bin")
    out = run([meshlm, "generate", "--model", model_dir, "--prompt-ids", ",".join(map(str, prompt)),
               "-n", str(N_GEN), "--ids", "--ignore-eos", "--logits-out", logits_path])
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return name, False, "engine printed no ids"
    eng_ids = [int(t) for t in lines[-1].split()]
    eng_logits = np.fromfile(logits_path, dtype="<f4").astype(np.float64)
    if eng_logits.size != len(eng_ids) * VOCAB:
        return name, False, f"logits file has {eng_logits.size} floats, expected {len(eng_ids)} x {VOCAB}"
    eng_logits = eng_logits.reshape(len(eng_ids), VOCAB)

    model = hf_reference.Model(model_dir)
    ref_ids, ref_rows = hf_reference.greedy(model, prompt, N_GEN)
    ref_logits = torch.stack(ref_rows).numpy()

    tol = TOL[dtype]
    if len(eng_ids) != N_GEN:
        return name, False, f"engine generated {len(eng_ids)} ids, expected {N_GEN}: {eng_ids}"
    diverge = next((i for i in range(N_GEN) if eng_ids[i] != ref_ids[i]), None)
    rows = N_GEN if diverge is None else diverge + 1  # the divergent row's logits are comparable
    max_diff = float(np.abs(eng_logits[:rows] - ref_logits[:rows]).max())
    top2 = np.sort(ref_logits, axis=1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0])[:rows].min())
    detail = f"max|dlogit| {max_diff:.3g} (tol {tol:g}), min ref top1-top2 margin {margin:.3g}"
    if max_diff >= tol:
        return name, False, detail + f"; ids engine {eng_ids} ref {ref_ids}"
    if diverge is not None:
        gap = abs(ref_logits[diverge, ref_ids[diverge]] - ref_logits[diverge, eng_ids[diverge]])
        if gap >= tol:
            return name, False, detail + f"; ids differ at step {diverge} (ref gap {gap:.3g}): " \
                                         f"engine {eng_ids} ref {ref_ids}"
        detail += f"; near tie at step {diverge} (gap {gap:.3g}), later steps not compared"
    return name, True, detail


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meshlm", required=True, help="path of the meshlm binary")
    ap.add_argument("--arch", default="all", choices=["all"] + sorted(SHAPES))
    ap.add_argument("--work", default=None, help="folder for models (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    if not os.access(args.meshlm, os.X_OK):
        print(f"FAIL: no executable meshlm at {args.meshlm}")
        return 1
    torch.set_num_threads(1)
    archs = sorted(SHAPES) if args.arch == "all" else [args.arch]
    work = args.work or tempfile.mkdtemp(prefix="meshlm_model_ref_")
    os.makedirs(work, exist_ok=True)
    passed = failed = 0
    try:
        for arch in archs:
            for dtype, untied, shards, *extra in CASES + EXTRA.get(arch, []):
                t0 = time.time()
                try:
                    name, ok, detail = check_case(args.meshlm, arch, dtype, untied, shards, work,
                                                  extra[0] if extra else ())
                except Exception as e:  # noqa: BLE001 (report and go on with the other cases)
                    name, ok, detail = f"{arch}-{dtype}", False, f"error: {e}"
                print(f"{'PASS' if ok else 'FAIL'} {name}: {detail} [{time.time() - t0:.1f}s]", flush=True)
                passed += ok
                failed += not ok
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"model_ref summary: {passed} cases passed, {failed} cases failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
