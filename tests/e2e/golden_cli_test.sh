#!/bin/sh
# End to end on the golden model through the CLI and the real tokenizer: text prompt -> the same
# ids llama.cpp tokenized and generated, and perplexity equal to llama-perplexity's to 4
# significant digits. Usage: golden_cli_test.sh MESHLM MODEL_DIR SHARED_DIR
set -e
MESHLM="$1"; MODEL="$2"; SHARED="$3"
[ -f "$MODEL/.complete" ] && [ -d "$SHARED/golden" ] || { echo "golden model absent: skip"; exit 77; }
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
G="$SHARED/golden/llamacpp_tiny_f32_greedy.json"
n=$($PY -c "import json;print(len(json.load(open('$G'))['prompts']))")
i=0
while [ $i -lt $n ]; do
  prompt=$($PY -c "import json;print(json.load(open('$G'))['prompts'][$i]['prompt'])")
  want=$($PY -c "import json;print(' '.join(map(str,json.load(open('$G'))['prompts'][$i]['generated_ids'])))")
  got=$("$MESHLM" generate --model "$MODEL" --prompt "$prompt" -n 24 --ids --threads 2 2>/dev/null)
  [ "$got" = "$want" ] || { echo "prompt $i: got '$got' want '$want'"; exit 1; }
  i=$((i + 1))
done
echo "greedy ids from text prompts match llama.cpp"
out=$("$MESHLM" perplexity --model "$MODEL" -f "$SHARED/golden/ppl_text_gpl3_first190lines.txt" -c 128 --threads 2 2>/dev/null)
ppl=$(echo "$out" | sed -n 's/^PPL = //p')
want=$($PY -c "import json;print(json.load(open('$SHARED/golden/llamacpp_tiny_f32_perplexity.json'))['runs']['f32kv_fa_off']['final_ppl'])")
echo "meshlm PPL $ppl, llama.cpp PPL $want"
$PY -c "
a,b=float('$ppl'),float('$want')
from math import log10, floor
r=lambda x: round(x, -int(floor(log10(abs(x))))+3)
assert r(a)==r(b), f'{a} vs {b} differ in 4 significant digits'
print('perplexity matches to 4 significant digits', r(a))"
