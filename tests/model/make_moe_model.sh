#!/bin/sh
# Writes the tiny Qwen3-MoE of moe_test.cpp with `meshlm synth` (MESHLM, the second argument):
# 8 experts, 2 per token, layer 1 dense. Does nothing when OUT is already complete (the aarch64
# step of scripts/test_arm64.sh makes it with the x86 meshlm first).
set -e
out="$1"
meshlm="$2"
if [ -f "$out/.complete" ]; then exit 0; fi
rm -rf "$out"
"$meshlm" synth --arch qwen3_moe --out "$out" --hidden 128 --intermediate 256 --layers 4 \
  --heads 4 --kv-heads 2 --head-dim 32 --vocab 512 --dtype bf16 --experts 8 \
  --experts-per-tok 2 --moe-intermediate 64 --mlp-only-layers 1 --seed 7 --threads 1 >/dev/null
touch "$out/.complete"
