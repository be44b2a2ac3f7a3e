#!/usr/bin/python3
"""Checks `meshlm synth` output against the Hugging Face layout, without the engine:
config.json keys per architecture, the exact tensor name set with shapes and dtypes,
weight statistics (std of projections / embeddings / norms / biases), determinism (same bytes
for --threads 1 and 2; different bytes for another seed) and the sharded index.

Usage: check_synth.py --meshlm PATH    (exit 0 pass, 1 fail, 77 skip without numpy)
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError as e:
    print(f"SKIP: {e}")
    sys.exit(77)

H, I, L, NH, NKV, V = 128, 384, 2, 4, 2, 512
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL", msg)


def synth(meshlm, out, *extra, vocab=V):
    subprocess.run([meshlm, "synth", "--out", out, "--hidden", str(H), "--intermediate", str(I), "--layers",
                    str(L), "--heads", str(NH), "--kv-heads", str(NKV), "--vocab", str(vocab), *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def tensor(header, data, name):
    h = header[name]
    a, b = h["data_offsets"]
    if h["dtype"] == "BF16":
        x = (np.frombuffer(data[a:b], "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        x = np.frombuffer(data[a:b], {"F32": "<f4", "F16": "<f2"}[h["dtype"]]).astype(np.float32)
    return x.reshape(h["shape"])


def expected_tensors(arch, hd, untied):
    t = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = [H]
        t[p + "post_attention_layernorm.weight"] = [H]
        t[p + "self_attn.q_proj.weight"] = [NH * hd, H]
        t[p + "self_attn.k_proj.weight"] = [NKV * hd, H]
        t[p + "self_attn.v_proj.weight"] = [NKV * hd, H]
        t[p + "self_attn.o_proj.weight"] = [H, NH * hd]
        t[p + "mlp.gate_proj.weight"] = [I, H]
        t[p + "mlp.up_proj.weight"] = [I, H]
        t[p + "mlp.down_proj.weight"] = [H, I]
        if arch == "qwen2":
            for x, rows in (("q", NH * hd), ("k", NKV * hd), ("v", NKV * hd)):
                t[p + f"self_attn.{x}_proj.bias"] = [rows]
        if arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = [hd]
            t[p + "self_attn.k_norm.weight"] = [hd]
    if untied:
        t["lm_head.weight"] = [V, H]
    return t


def check_arch(meshlm, work, arch):
    hd = 64 if arch in ("qwen3", "llama") else H // NH
    untied = arch in ("llama", "mistral")
    out = os.path.join(work, arch)
    synth(meshlm, out, "--arch", arch, "--head-dim", str(hd), "--dtype", "bf16", *(["--untied"] if untied else []))
    cfg = json.load(open(os.path.join(out, "config.json")))
    cls = {"qwen3": "Qwen3ForCausalLM", "qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
           "mistral": "MistralForCausalLM"}[arch]
    check(cfg["architectures"] == [cls] and cfg["model_type"] == arch, f"{arch}: architectures/model_type")
    for k, v in (("hidden_size", H), ("intermediate_size", I), ("num_hidden_layers", L),
                 ("num_attention_heads", NH), ("num_key_value_heads", NKV), ("vocab_size", V),
                 ("tie_word_embeddings", not untied), ("torch_dtype", "bfloat16"), ("hidden_act", "silu")):
        check(cfg.get(k) == v, f"{arch}: {k} = {cfg.get(k)!r}, expected {v!r}")
    if arch == "qwen3":
        check(cfg.get("head_dim") == hd and cfg.get("attention_bias") is False, "qwen3: head_dim/attention_bias")
        check(cfg["rope_theta"] == 1000000 and cfg["rms_norm_eps"] == 1e-6, "qwen3: rope_theta/eps")
    if arch == "qwen2":
        check("head_dim" not in cfg and "attention_bias" not in cfg, "qwen2: no head_dim/attention_bias keys")
        check(cfg["rope_theta"] == 1e6 and cfg["use_sliding_window"] is False, "qwen2: rope/sliding")
    if arch == "llama":
        check(cfg["rope_theta"] == 500000 and cfg["rms_norm_eps"] == 1e-5, "llama: rope_theta/eps")
        check(cfg.get("rope_scaling") == {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                          "original_max_position_embeddings": 8192, "rope_type": "llama3"},
              f"llama: rope_scaling {cfg.get('rope_scaling')}")
    if arch == "mistral":
        check(cfg["rope_theta"] == 1e6 and cfg["sliding_window"] is None and cfg["rms_norm_eps"] == 1e-5,
              "mistral: rope_theta/sliding_window/eps")
        check("head_dim" not in cfg, "mistral: head_dim == hidden/heads is not written")
    check(os.path.exists(os.path.join(out, "generation_config.json")), f"{arch}: generation_config.json")
    info = json.load(open(os.path.join(out, "synth_info.json")))
    check(info["seed"] == 1234 and "--out" not in info["generator_args"], f"{arch}: synth_info")

    header, data = read_st(os.path.join(out, "model.safetensors"))
    check(header.get("__metadata__") == {"format": "pt"}, f"{arch}: __metadata__")
    exp = expected_tensors(arch, hd, untied)
    names = set(header) - {"__metadata__"}
    check(names == set(exp), f"{arch}: tensor names differ: extra {sorted(names - set(exp))[:4]} "
                             f"missing {sorted(set(exp) - names)[:4]}")
    for name in names & set(exp):
        check(header[name]["shape"] == exp[name] and header[name]["dtype"] == "BF16", f"{arch}: {name} shape/dtype")
    # weight statistics (loose: bf16 rounding and finite samples)
    e = tensor(header, data, "model.embed_tokens.weight")
    check(abs(e.std() - 3 / np.sqrt(H)) < 0.02 * 3 / np.sqrt(H) and abs(e.mean()) < 0.01, f"{arch}: embedding std")
    q = tensor(header, data, "model.layers.0.self_attn.q_proj.weight")
    check(abs(q.std() - 1.5 / np.sqrt(H)) < 0.03 * 1.5 / np.sqrt(H), f"{arch}: q_proj std {q.std()}")
    d = tensor(header, data, "model.layers.1.mlp.down_proj.weight")
    check(abs(d.std() - 1.5 / np.sqrt(I)) < 0.03 * 1.5 / np.sqrt(I), f"{arch}: down_proj std {d.std()}")
    n = np.concatenate([tensor(header, data, k).ravel() for k in names if k.endswith("norm.weight")])
    check(abs(n.mean() - 1) < 0.02 and abs(n.std() - 0.1) < 0.01, f"{arch}: norm weights {n.mean()} {n.std()}")
    if arch == "qwen2":
        b = np.concatenate([tensor(header, data, k).ravel() for k in names if k.endswith(".bias")])
        check(abs(b.std() - 0.5) < 0.05, f"qwen2: bias std {b.std()}")
    if untied:
        check(not np.array_equal(tensor(header, data, "lm_head.weight"), e), f"{arch}: lm_head == embedding")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshlm", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meshlm_check_synth_")
    try:
        for arch in ("qwen3", "qwen2", "llama", "mistral"):
            check_arch(args.meshlm, work, arch)
        # determinism: thread count does not matter, the seed does
        a, b, c = (os.path.join(work, x) for x in ("det1", "det2", "det3"))
        synth(args.meshlm, a, "--threads", "1", "--dtype", "f32", vocab=70000)
        synth(args.meshlm, b, "--threads", "2", "--dtype", "f32", vocab=70000)
        synth(args.meshlm, c, "--threads", "2", "--dtype", "f32", "--seed", "7", vocab=70000)
        fa, fb, fc = (open(os.path.join(x, "model.safetensors"), "rb").read() for x in (a, b, c))
        check(fa == fb, "synth output depends on --threads")
        check(fa != fc and len(fa) == len(fc), "--seed does not change the weights")
        # sharded: same tensors, same bytes, index names every tensor
        s = os.path.join(work, "sharded")
        synth(args.meshlm, s, "--dtype", "f32", vocab=70000)  # then overwritten with shards
        synth(args.meshlm, s, "--threads", "2", "--dtype", "f32", "--shards", "3", vocab=70000)
        idx = json.load(open(os.path.join(s, "model.safetensors.index.json")))
        h1, d1 = read_st(os.path.join(a, "model.safetensors"))
        check(set(idx["weight_map"]) == set(h1) - {"__metadata__"}, "index weight_map names")
        total = 0
        for fn in sorted(set(idx["weight_map"].values())):
            h, d = read_st(os.path.join(s, fn))
            for name in set(h) - {"__metadata__"}:
                check(idx["weight_map"][name] == fn, f"{name} in {fn} but index says {idx['weight_map'][name]}")
                total += h[name]["data_offsets"][1] - h[name]["data_offsets"][0]
                check(np.array_equal(tensor(h, d, name), tensor(h1, d1, name)), f"sharded {name} differs")
        check(total == idx["metadata"]["total_size"], "index total_size")
        check(not os.path.exists(os.path.join(s, "model.safetensors")), "stale model.safetensors beside shards")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"check_synth: {'FAILED ' + str(len(failures)) + ' checks' if failures else 'all checks passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
