#!/bin/sh
# The golden model quantized to TYPE (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M, Q6_K) by
# `meshlm quantize`, against llama.cpp's figures for llama-quantize's file of that type
# (tests/data/llamacpp/llamacpp_tiny_TYPE.json; Q4_K_M's is ../shared/golden's):
#   * the file is byte-identical with llama-quantize's (the golden's sha256);
#   * run from the GGUF alone (weights, config, tokenizer from its metadata), greedy ids equal
#     llama.cpp's at every step before the first one where llama.cpp's own top-1 lead is under
#     0.1 nats, on 1 and 2 stages: at that step the choice is a near-tie that activation rounding
#     may flip (and does: Q4_0 prompt 2 step 0, Q8_0 prompt 1 step 4, ...), and later steps
#     follow from it;
#   * perplexity (the f32 golden's protocol: -c 128, no BOS) within TOL_PCT (0.5) % of
#     llama-perplexity's.
# Usage: golden_quant_cli_test.sh MESHLM MODEL_DIR SHARED_DIR TYPE [TOL_PCT]
set -e
MESHLM="$1"; MODEL="$2"; SHARED="$3"; TYPE="$4"; TOL="${5:-0.5}"
DATA="$(dirname "$0")/../data/llamacpp"
G="$DATA/llamacpp_tiny_$TYPE.json"
[ -f "$G" ] || G="$SHARED/golden/llamacpp_tiny_$TYPE.json"
F32="$MODEL/qwen3-tiny-synth-f32.gguf"
TEXT="$SHARED/golden/ppl_text_gpl3_first190lines.txt"
[ -f "$MODEL/.complete" ] && [ -f "$G" ] && [ -f "$F32" ] && [ -f "$TEXT" ] ||
  { echo "golden model, $TYPE golden or ../shared absent: skip"; exit 77; }
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
Q="$TMP/model.gguf"
"$MESHLM" quantize --model "$F32" --out "$Q" --type "$TYPE" --threads 2 >/dev/null 2>"$TMP/log" ||
  { cat "$TMP/log"; exit 1; }
want_sha=$($PY -c "import json;print(json.load(open('$G'))['quantize']['gguf_sha256'])")
got_sha=$(sha256sum "$Q" | cut -d' ' -f1)
[ "$got_sha" = "$want_sha" ] || { echo "$TYPE differs from llama-quantize's ($got_sha vs $want_sha)"; exit 1; }
echo "$TYPE byte-identical with llama-quantize's"
n=$($PY -c "import json;print(len(json.load(open('$G'))['prompts']))")
for layout in "" "--stages 2"; do
  i=0
  while [ $i -lt $n ]; do
    # The prompt, and how many steps are compared: those before the first near-tie (at least 1
    # generated, so that the run itself is checked).
    set -- $($PY -c "
import json
p = json.load(open('$G'))['prompts'][$i]
n = next((s for s, t in enumerate(p['top2']) if t[0][1] - t[1][1] < 0.1), len(p['generated_ids']))
print(','.join(map(str, p['prompt_ids'])), n)")
    got=$("$MESHLM" generate --model "$Q" --prompt-ids "$1" -n $(($2 > 0 ? $2 : 1)) --ids --ignore-eos --threads 2 \
            $layout 2>/dev/null)
    [ -n "$got" ] || { echo "prompt $i $layout: no ids"; exit 1; }
    $PY - "$G" $i "$got" "$layout" <<'PY'
import json, sys
g = json.load(open(sys.argv[1]))["prompts"][int(sys.argv[2])]
got = [int(x) for x in sys.argv[3].split()]
want, top2 = g["generated_ids"], g["top2"]
# The first near-tie in llama.cpp itself: this step and later ones may differ legitimately.
tie = next((s for s, t in enumerate(top2) if t[0][1] - t[1][1] < 0.1), len(want))
checked = 0
for step, w in enumerate(want[:tie]):
    if step >= len(got):
        sys.exit(f"prompt {sys.argv[2]}: only {len(got)} ids")
    if got[step] != w:
        sys.exit(f"prompt {sys.argv[2]} {sys.argv[4]}: step {step} got {got[step]} want {w} (lead {top2[step][0][1] - top2[step][1][1]:.3f})")
    checked += 1
print(f"prompt {sys.argv[2]} {sys.argv[4] or '1 stage'}: {checked} steps equal to llama.cpp's (first near-tie: step {tie})")
PY
    i=$((i + 1))
  done
done
out=$("$MESHLM" perplexity --model "$Q" -f "$TEXT" -c 128 --threads 2 2>/dev/null)
ppl=$(echo "$out" | sed -n 's/^PPL = //p')
want=$($PY -c "import json;print(json.load(open('$G'))['perplexity']['final_ppl'])")
echo "meshlm PPL $ppl, llama.cpp PPL $want ($TYPE)"
$PY -c "
a,b=float('$ppl'),float('$want')
assert abs(a-b) <= $TOL/100*b, f'{a} vs {b}: more than $TOL% apart'
print(f'perplexity within {abs(a-b)/b*100:.3f}% of llama.cpp')"
