#!/bin/bash
# Before/after check for refactors that must not change behaviour: two meshlm binaries (OLD, NEW)
# synthesise the same four small models (qwen3 bf16, qwen2 f16 untied, llama f32, mistral bf16
# untied) — their files must be byte-identical — and generate 16 greedy tokens on each with
# 1, 2 and 4 in-process stages and 2 and 3 worker processes: ids and the --logits-out bytes must
# be identical. Prints one line per case and "fail=0" when everything matched.
#   scripts/compare_builds.sh OLD_MESHLM NEW_MESHLM [WORKDIR]
OLD=${1:?old meshlm binary}; NEW=${2:?new meshlm binary}; D=${3:-$(mktemp -d)}
mkdir -p "$D"
export MESHLM_SECRET=cmp-secret
fail=0
for spec in "qwen3 bf16" "qwen2 f16 --untied" "llama f32" "mistral bf16 --untied"; do
  set -- $spec; arch=$1; dt=$2; extra=$3
  for who in old new; do
    bin=$OLD; [ $who = new ] && bin=$NEW
    rm -rf $D/$arch-$who
    $bin synth --arch $arch --dtype $dt $extra --out $D/$arch-$who --hidden 128 --intermediate 384 \
      --layers 4 --heads 4 --kv-heads 2 --head-dim 32 --vocab 1000 >/dev/null 2>&1 || { echo "synth $who $arch failed"; fail=1; }
  done
  for f in $(cd $D/$arch-old && ls); do
    if [ "$f" = synth_info.json ]; then continue; fi
    cmp -s $D/$arch-old/$f $D/$arch-new/$f || { echo "DIFF synth $arch $f"; fail=1; }
  done
  m=$D/$arch-new
  for layout in "" "--local-layers 0-1,2-3" "--local-layers 0-0,1-1,2-2,3-3" "--stages 2" "--stages 3"; do
    outs=""
    for who in old new; do
      bin=$OLD; [ $who = new ] && bin=$NEW
      args=$layout
      # Builds before --local-layers took the same stages as layer boundaries (--local-splits).
      if ! $bin generate --help 2>/dev/null | grep -q -- --local-layers; then
        case $layout in
          "--local-layers 0-1,2-3") args="--local-splits 0,2,4" ;;
          "--local-layers 0-0,1-1,2-2,3-3") args="--local-splits 0,1,2,3,4" ;;
        esac
      fi
      ids=$($bin generate --model $m --prompt-ids 1,5,9,200,7 -n 16 --ids --ignore-eos --threads 1 $args --logits-out $D/logits-$who.bin 2>$D/err-$who)
      outs="$outs|$ids|$(sha256sum < $D/logits-$who.bin | cut -c1-16)"
    done
    IFS='|' read -r _ io lo in ln <<< "$outs"
    if [ "$io" = "$in" ] && [ "$lo" = "$ln" ] && [ -n "$io" ]; then
      echo "same  $arch $dt ${layout:-1 stage}: ids [$in] logits $ln"
    else
      echo "DIFF  $arch $dt ${layout:-1 stage}: old [$io] $lo new [$in] $ln"; tail -3 $D/err-old $D/err-new; fail=1
    fi
  done
done
echo "fail=$fail"
exit $fail
