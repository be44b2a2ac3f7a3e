#!/bin/sh
# Writes the tiny models of tp_stage_test.cpp into OUT (the first argument) with `meshlm synth`
# and `meshlm quantize` (MESHLM, the second argument):
#   qwen3/      dense, qk_norm, 16 query heads on 8 KV heads (3 members of 8, shares {3,5}), F32
#   qwen2/      dense, q/k/v biases, untied head, vocabulary 500 (uneven vocabulary ranges), BF16
#   qwen3_moe/  8 experts, 2 per token, layer 1 dense, F32
#   qwen2_moe/  8 experts + a shared expert, F32
#   q4km.gguf   a dense qwen3 with hidden 256, intermediate 768 (3 blocks of 256) and 4 query
#               heads of 64 per KV head (a KV head's wo columns are one block of 256), quantized
#               Q4_K_M: intermediate and wo splits on 256-element block boundaries
#   q4km-narrow.gguf  one 64-wide query head per KV head, Q4_K_M: no head split is whole blocks
# Does nothing when OUT is already complete.
set -e
out="$1"
meshlm="$2"
if [ -f "$out/.complete" ]; then exit 0; fi
[ -x "$meshlm" ] || { echo "no meshlm binary: skipping"; exit 77; }
rm -rf "$out"
mkdir -p "$out"
synth() { "$meshlm" synth --threads 1 --seed 5 "$@" >/dev/null; }
synth --arch qwen3 --out "$out/qwen3" --hidden 128 --intermediate 320 --heads 16 --kv-heads 8 \
  --head-dim 16 --dtype f32 --vocab 512 --layers 2
synth --arch qwen2 --out "$out/qwen2" --hidden 128 --intermediate 320 --heads 8 --kv-heads 4 \
  --head-dim 16 --dtype bf16 --vocab 500 --untied --layers 2
synth --arch qwen3_moe --out "$out/qwen3_moe" --hidden 128 --intermediate 256 --layers 3 \
  --heads 8 --kv-heads 4 --head-dim 16 --experts 8 --experts-per-tok 2 --moe-intermediate 96 \
  --mlp-only-layers 1 --dtype f32 --vocab 512
synth --arch qwen2_moe --out "$out/qwen2_moe" --hidden 128 --intermediate 256 --heads 8 \
  --kv-heads 4 --head-dim 16 --experts 8 --experts-per-tok 2 --moe-intermediate 96 \
  --shared-expert-intermediate 160 --dtype f32 --vocab 512 --layers 2
# quantize takes the GGUF vocabulary from tokenizer.json: a two-token byte-level BPE with the
# qwen2 pre-tokenizer is enough (the tests feed token ids).
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
q4km() {  # NAME SYNTH-ARGS...: a qwen3 from synth, quantized to NAME.gguf
  name="$1"
  shift
  synth --arch qwen3 --out "$out/$name-src" --dtype f32 --vocab 512 --layers 2 "$@"
  $PY - "$out/$name-src/tokenizer.json" <<'PYEOF'
import json, sys
regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
         r"\s*[\r\n]+|\s+(?!\S)|\s+")
json.dump({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated"},
               {"type": "ByteLevel", "add_prefix_space": False}]}},
          open(sys.argv[1], "w"))
PYEOF
  "$meshlm" quantize --model "$out/$name-src" --out "$out/$name.gguf" --type Q4_K_M --threads 1 \
    >/dev/null 2>&1
  rm -rf "$out/$name-src"
}
q4km q4km --hidden 256 --intermediate 768 --heads 16 --kv-heads 4 --head-dim 64
# One query head of 64 per KV head: a member's wo columns cannot be whole blocks of 256.
q4km q4km-narrow --hidden 256 --intermediate 256 --heads 4 --kv-heads 4 --head-dim 64
touch "$out/.complete"
