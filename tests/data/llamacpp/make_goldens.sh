#!/bin/bash
# Regenerates llamacpp_tiny_TYPE.json beside this file: llama.cpp's figures for the golden model
# (tests/model/make_golden_model.sh: the F32 GGUF of ../shared/golden) quantized by llama.cpp's own
# llama-quantize. Needs a llama.cpp source tree and its CPU build (llama-quantize,
# llama-perplexity, libllama); CI has neither, so the JSONs are committed.
#   make_goldens.sh LLAMA_SRC LLAMA_BUILD F32_GGUF "LLAMA_VERSION" TYPE...
# LLAMA_VERSION says which llama.cpp this is (release tag and commit), recorded in each JSON.
# Per TYPE: `llama-quantize F32 OUT TYPE 2` (sha256, bytes); greedy_top2.cpp (ours, on llama.h)
# for 24 steps on the prompts of ../shared/golden/llamacpp_tiny_Q4_K_M.json (n_ctx 512, f32 KV,
# flash attention off, 2 threads); llama-perplexity with the f32 golden's protocol.
set -e
SRC=${1:?llama.cpp source}; BUILD=${2:?llama.cpp build}; F32=${3:?F32 GGUF}; VERSION=${4:?version}
shift 4
HERE="$(cd "$(dirname "$0")" && pwd)"
SHARED="$HERE/../../../../shared"
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
BIN=$BUILD/bin
g++ -O2 -std=c++17 "$HERE/greedy_top2.cpp" -I"$SRC/include" -I"$SRC/ggml/include" -L"$BIN" \
  -lllama -lggml -lggml-base -Wl,-rpath,"$BIN" -o "$TMP/greedy_top2"
for T in "$@"; do
  echo "== $T" >&2
  Q="$TMP/model-$T.gguf"
  "$BIN/llama-quantize" "$F32" "$Q" "$T" 2 >"$TMP/quantize.log" 2>&1 || { tail "$TMP/quantize.log"; exit 1; }
  : >"$TMP/greedy-$T.jsonl"
  for ids in $($PY -c "
import json
for p in json.load(open('$SHARED/golden/llamacpp_tiny_Q4_K_M.json'))['prompts']: print(','.join(map(str, p['prompt_ids'])))"); do
    "$TMP/greedy_top2" "$Q" 24 2 "$ids" 2>/dev/null >>"$TMP/greedy-$T.jsonl"
  done
  "$BIN/llama-perplexity" -m "$Q" -f "$SHARED/golden/ppl_text_gpl3_first190lines.txt" -c 128 -t 2 \
    -ctk f32 -ctv f32 -fa off >"$TMP/ppl-$T.log" 2>&1
  $PY - "$T" "$Q" "$F32" "$VERSION" "$SHARED" "$TMP" "$HERE/llamacpp_tiny_$T.json" <<'PY'
import hashlib, json, os, re, sys
T, Q, F32, version, shared, tmp, out = sys.argv[1:8]
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
base = json.load(open(f"{shared}/golden/llamacpp_tiny_Q4_K_M.json"))
greedy = [json.loads(l) for l in open(f"{tmp}/greedy-{T}.jsonl")]
log = open(f"{tmp}/ppl-{T}.log").read()
running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", log)]
final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
assert len(greedy) == len(base["prompts"]) and running and final, "llama.cpp runs incomplete"
j = {
    "what": f"llama.cpp {version} on a GGUF that its own llama-quantize made from the F32 GGUF of the model",
    "model": dict(base["model"], f32_gguf_sha256=sha(F32)),
    "quantize": {"type": T, "command": f"llama-quantize qwen3-tiny-synth-f32.gguf OUT.gguf {T} 2",
                 "gguf_sha256": sha(Q), "gguf_bytes": os.path.getsize(Q)},
    "settings": base["settings"],
    "prompts": [{"prompt_ids": p["prompt_ids"], **g} for p, g in zip(base["prompts"], greedy)],
    "perplexity": {"text": "ppl_text_gpl3_first190lines.txt", "ctx": 128, "bos": False,
                   "final_ppl": float(final.group(1)), "final_ppl_err": float(final.group(2)),
                   "running_ppl_after_each_chunk": running,
                   "cmd": f"llama-perplexity -m OUT.gguf -f ppl_text_gpl3_first190lines.txt -c 128 -t 2 -ctk f32 -ctv f32 -fa off"},
    "file": f"not kept: `llama-quantize ... {T} 2` of the F32 GGUF rebuilds it (the sha256 above); "
            f"`meshlm quantize --type {T}` writes the same bytes",
    "how_to_compare": base["how_to_compare"],
    "generator": "tests/data/llamacpp/make_goldens.sh (greedy_top2.cpp on libllama, llama-perplexity)",
}
with open(out, "w") as f:
    json.dump(j, f, indent=1)
    f.write("\n")
print(f"{T}: sha {j['quantize']['gguf_sha256'][:16]} {j['quantize']['gguf_bytes']} B, PPL {j['perplexity']['final_ppl']}")
PY
done
