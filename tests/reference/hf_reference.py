#!/usr/bin/python3
"""Independent float64 PyTorch reference of the Hugging Face causal-LM forward pass.

Covers Qwen3ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM (Llama 3.x, incl. rope_scaling
"llama3"), MistralForCausalLM, Qwen3MoeForCausalLM, Qwen2MoeForCausalLM and MixtralForCausalLM, written from the
transformers modeling semantics:

  x = embed_tokens[ids]
  per layer:
    h = RMSNorm(x) * input_layernorm            RMSNorm(x) = x * rsqrt(mean(x^2) + eps)
    q, k, v = h W_q^T (+ b_q), h W_k^T (+ b_k), h W_v^T (+ b_v)
    Qwen3 only: q, k = RMSNorm per head (q_norm / k_norm weights [head_dim]), before RoPE
    q, k = RoPE (rotate_half: x * cos + cat(-x2, x1) * sin, angles pos * inv_freq, both halves)
    GQA: query head j uses kv head j // (n_heads / n_kv_heads)
    attn = softmax(q k^T / sqrt(head_dim) + causal mask) v, then o_proj
    x = x + attn
    h = RMSNorm(x) * post_attention_layernorm
    x = x + down(silu(gate(h)) * up(h))
    Qwen3-MoE, in the layers where (layer + 1) % decoder_sparse_step == 0 and that are not in
    mlp_only_layers, instead: p = softmax(h W_router^T) over all experts, the top
    num_experts_per_tok kept (divided by their sum when norm_topk_prob), and
    x = x + sum over the kept experts e of p_e * down_e(silu(gate_e(h)) * up_e(h))
    Qwen2-MoE also adds sigmoid(h W_shared_gate^T) * shared_expert(h) (a SiLU-gated MLP)
  logits = RMSNorm(x) * norm, times lm_head^T (embed_tokens when tie_word_embeddings)

All math is float64; weights are read as stored (F32, BF16 or F16 values, widened exactly).
RoPE inverse frequencies are computed in float32 exactly as transformers does (default and
llama3 / linear scaling), then widened; angles, cos and sin are float64.

CLI:
  hf_reference.py --model DIR --prompt-ids 1,2,3 -n N --out FILE.json [--no-logits]
writes {"ids": [generated ids], "logits": [[vocab floats], ...]} where logits[i] are the logits
from which ids[i] was chosen (greedy argmax, full recompute every step).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

F64 = torch.float64

# ---------------------------------------------------------------------------------------------
# safetensors (header JSON + raw little-endian data)
# ---------------------------------------------------------------------------------------------

_NP_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def read_safetensors(path):
    """Returns {name: float64 torch tensor} for every tensor of one .safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        if dt not in _NP_DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        begin, end = info["data_offsets"]
        raw = np.frombuffer(data, dtype=_NP_DTYPES[dt], count=(end - begin) // np.dtype(_NP_DTYPES[dt]).itemsize,
                            offset=base + begin)
        if dt == "BF16":  # bf16 bits are the upper half of a float32
            arr = (raw.astype(np.uint32) << np.uint32(16)).view(np.float32)
        else:
            arr = raw
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(info["shape"]))
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for fn in files:
        weights.update(read_safetensors(os.path.join(model_dir, fn)))
    return weights


# ---------------------------------------------------------------------------------------------
# configuration, with the defaults of the transformers config classes
# ---------------------------------------------------------------------------------------------

ARCHS = {
    "Qwen3ForCausalLM": "qwen3",
    "Qwen2ForCausalLM": "qwen2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "MixtralForCausalLM": "mixtral",
}


class Config:
    def __init__(self, cfg):
        archs = cfg.get("architectures") or []
        kind = next((ARCHS[a] for a in archs if a in ARCHS), cfg.get("model_type"))
        if kind not in ARCHS.values():
            raise ValueError(f"unsupported architecture {archs} / model_type {cfg.get('model_type')}")
        self.kind = kind
        self.hidden = cfg["hidden_size"]
        self.n_layers = cfg["num_hidden_layers"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg.get("num_key_value_heads") or self.n_heads
        self.intermediate = cfg["intermediate_size"]
        self.vocab = cfg["vocab_size"]
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.rope_theta = float(cfg.get("rope_theta", 10000.0))
        self.rope_scaling = cfg.get("rope_scaling") or None
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        if kind in ("qwen3", "qwen3_moe"):
            hd = cfg.get("head_dim", 128)  # Qwen3Config's / Qwen3MoeConfig's default
        elif kind in ("qwen2", "qwen2_moe"):
            hd = None  # Qwen2 derives it
        else:
            hd = cfg.get("head_dim")
        self.head_dim = hd if hd else self.hidden // self.n_heads
        self.qk_norm = kind in ("qwen3", "qwen3_moe")
        # q/k/v biases: always for Qwen2; q/k/v/o with attention_bias for Qwen3 / Llama.
        with_bias = ("qwen3", "qwen3_moe", "llama")
        self.qkv_bias = kind in ("qwen2", "qwen2_moe") or (kind in with_bias and cfg.get("attention_bias", False))
        self.o_bias = kind in with_bias and bool(cfg.get("attention_bias", False))
        # Mixture of experts (Qwen3MoeConfig's defaults).
        # Qwen3MoeConfig / Qwen2MoeConfig defaults.
        self.n_experts = {"qwen3_moe": cfg.get("num_experts", 128),
                          "qwen2_moe": cfg.get("num_experts", 60),
                          "mixtral": cfg.get("num_local_experts", 8)}.get(kind, 0)
        self.top_k = cfg.get("num_experts_per_tok", {"qwen2_moe": 4, "mixtral": 2}.get(kind, 8))
        self.shared_expert = kind == "qwen2_moe" and cfg.get("shared_expert_intermediate_size", 5632) > 0
        # MixtralSparseMoeBlock always renormalises the top-k and has experts in every layer.
        self.norm_topk_prob = kind == "mixtral" or bool(cfg.get("norm_topk_prob", False))
        self.sparse_step = 1 if kind == "mixtral" else cfg.get("decoder_sparse_step", 1)
        self.mlp_only_layers = set() if kind == "mixtral" else set(cfg.get("mlp_only_layers") or [])
        self.mixtral = kind == "mixtral"
        self.mlp_bias = kind == "llama" and bool(cfg.get("mlp_bias", False))
        # Sliding-window attention (token i sees keys j with i - j < sliding_window): Mistral and
        # Mixtral in every layer when sliding_window is set; the Qwen families only with
        # use_sliding_window, in the layers from max_window_layers on.
        self.sliding_window = None
        self.window_from = 0
        if kind in ("mistral", "mixtral"):
            self.sliding_window = cfg.get("sliding_window")
        elif kind in ("qwen2", "qwen3", "qwen3_moe", "qwen2_moe") and cfg.get("use_sliding_window", False):
            self.sliding_window = cfg["sliding_window"]
            self.window_from = cfg.get("max_window_layers", 0)
        self.eos = cfg.get("eos_token_id")

    def moe_layer(self, layer):
        return (self.n_experts > 0 and layer not in self.mlp_only_layers
                and (layer + 1) % self.sparse_step == 0)


def rope_inv_freq(cfg):
    """inv_freq [head_dim/2] computed in float32 as transformers does, returned as float64."""
    dim = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim))
    rs = cfg.rope_scaling
    rope_type = (rs or {}).get("rope_type", (rs or {}).get("type", "default"))
    if rope_type == "default":
        pass
    elif rope_type == "linear":
        inv = inv / rs["factor"]
    elif rope_type == "llama3":
        factor = rs["factor"]
        lo, hi = rs["low_freq_factor"], rs["high_freq_factor"]
        old_ctx = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_ctx / lo
        high_freq_wavelen = old_ctx / hi
        wavelen = 2 * math.pi / inv
        # long wavelengths (low frequencies) are slowed down by `factor`, short ones kept,
        # the band in between interpolated linearly in 1/wavelen
        scaled = torch.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old_ctx / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    else:
        raise NotImplementedError(f"rope_scaling {rs}")
    return inv.to(F64)


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.raw_config = json.load(f)
        self.cfg = Config(self.raw_config)
        self.w = load_weights(model_dir)
        self.inv_freq = rope_inv_freq(self.cfg)
        c = self.cfg
        emb = self.w["model.embed_tokens.weight"]
        if tuple(emb.shape) != (c.vocab, c.hidden):
            raise ValueError(f"embed_tokens shape {tuple(emb.shape)} != ({c.vocab}, {c.hidden})")
        self.head = emb if c.tie else self.w["lm_head.weight"]

    def _linear(self, x, name, bias):
        y = x @ self.w[name + ".weight"].T
        if bias:
            y = y + self.w[name + ".bias"]
        return y

    def _mlp(self, h, prefix, bias, names=("gate_proj", "up_proj", "down_proj")):
        gate = self._linear(h, prefix + names[0], bias)
        up = self._linear(h, prefix + names[1], bias)
        return self._linear(torch.nn.functional.silu(gate) * up, prefix + names[2], bias)

    def _experts(self, h, p):
        """Qwen3MoeSparseMoeBlock / Qwen2MoeSparseMoeBlock / MixtralSparseMoeBlock: router
        softmax, top-k (renormalised when norm_topk_prob), weighted expert sum; Qwen2-MoE adds its
        gated shared expert. Mixtral names the block block_sparse_moe and its experts w1/w3/w2."""
        c = self.cfg
        block = p + ("block_sparse_moe." if c.mixtral else "mlp.")
        names = ("w1", "w3", "w2") if c.mixtral else ("gate_proj", "up_proj", "down_proj")
        probs = torch.softmax(self._linear(h, block + "gate", False), dim=-1)  # [T, E]
        top_p, top_e = torch.topk(probs, c.top_k, dim=-1)
        if c.norm_topk_prob:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(h)
        for e in range(c.n_experts):
            chosen = top_e == e  # [T, k]
            tokens = chosen.any(dim=-1).nonzero().flatten()
            if tokens.numel() == 0:
                continue
            weight = (top_p * chosen).sum(dim=-1)[tokens]
            y = self._mlp(h[tokens], f"{block}experts.{e}.", False, names)
            out[tokens] += weight[:, None] * y
        if c.shared_expert:  # Qwen2MoeSparseMoeBlock: + sigmoid(h W_g^T) * shared_expert(h)
            gate = torch.sigmoid(self._linear(h, p + "mlp.shared_expert_gate", False))  # [T, 1]
            out = out + gate * self._mlp(h, p + "mlp.shared_expert.", False)
        return out

    def forward(self, ids, last_only=False):
        """Logits [T, vocab] (float64) for the token ids; [1, vocab] (the last) with last_only."""
        c = self.cfg
        T = len(ids)
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]
        pos = torch.arange(T, dtype=F64)
        ang = torch.outer(pos, self.inv_freq)
        ang = torch.cat([ang, ang], dim=-1)  # [T, head_dim]
        cos, sin = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        i_idx = torch.arange(T)[:, None]
        j_idx = torch.arange(T)[None, :]
        allowed = j_idx <= i_idx
        full_mask = torch.zeros(T, T, dtype=F64).masked_fill(~allowed, float("-inf"))
        window_mask = full_mask
        if c.sliding_window:
            allowed = allowed & (i_idx - j_idx < c.sliding_window)
            window_mask = torch.zeros(T, T, dtype=F64).masked_fill(~allowed, float("-inf"))
        rep = c.n_heads // c.n_kv
        for layer in range(c.n_layers):
            p = f"model.layers.{layer}."
            mask = window_mask if layer >= c.window_from else full_mask
            h = rms_norm(x, self.w[p + "input_layernorm.weight"], c.eps)
            q = self._linear(h, p + "self_attn.q_proj", c.qkv_bias).view(T, c.n_heads, c.head_dim)
            k = self._linear(h, p + "self_attn.k_proj", c.qkv_bias).view(T, c.n_kv, c.head_dim)
            v = self._linear(h, p + "self_attn.v_proj", c.qkv_bias).view(T, c.n_kv, c.head_dim)
            if c.qk_norm:
                q = rms_norm(q, self.w[p + "self_attn.q_norm.weight"], c.eps)
                k = rms_norm(k, self.w[p + "self_attn.k_norm.weight"], c.eps)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(rep, dim=1)  # query head j <- kv head j // rep
            v = v.repeat_interleave(rep, dim=1)
            scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(c.head_dim) + mask
            probs = torch.softmax(scores, dim=-1)
            attn = torch.einsum("hts,shd->thd", probs, v).reshape(T, c.n_heads * c.head_dim)
            x = x + self._linear(attn, p + "self_attn.o_proj", c.o_bias)
            h = rms_norm(x, self.w[p + "post_attention_layernorm.weight"], c.eps)
            if c.moe_layer(layer):
                x = x + self._experts(h, p)
            else:
                x = x + self._mlp(h, p + "mlp.", c.mlp_bias)
        if last_only:
            x = x[-1:]
        h = rms_norm(x, self.w["model.norm.weight"], c.eps)
        return h @ self.head.T


def greedy(model, prompt_ids, n):
    """Greedy generation of n tokens (full recompute each step): (ids, [logits rows])."""
    seq = list(prompt_ids)
    ids, rows = [], []
    for _ in range(n):
        logits = model.forward(seq, last_only=True)[-1]
        tok = int(torch.argmax(logits))
        ids.append(tok)
        rows.append(logits)
        seq.append(tok)
    return ids, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="Hugging Face model folder")
    ap.add_argument("--prompt-ids", required=True, help="comma separated token ids")
    ap.add_argument("-n", type=int, default=16, help="tokens to generate")
    ap.add_argument("--out", required=True, help="output JSON file")
    ap.add_argument("--no-logits", action="store_true", help="write only the ids")
    args = ap.parse_args()
    prompt = [int(t) for t in args.prompt_ids.replace(" ", ",").split(",") if t]
    if not prompt:
        ap.error("--prompt-ids is empty")
    model = Model(args.model)
    if max(prompt) >= model.cfg.vocab or min(prompt) < 0:
        ap.error(f"prompt id out of range [0, {model.cfg.vocab})")
    ids, rows = greedy(model, prompt, args.n)
    out = {"ids": ids}
    if not args.no_logits:
        out["logits"] = [r.tolist() for r in rows]
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(" ".join(str(t) for t in ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
