#!/bin/bash
# meshlm against llama.cpp on one GGUF file: llama-bench and `meshlm bench` (-p 128 -n 64, one
# stage) run on the same file, interleaved A B A B for ROUNDS rounds at each thread count, so
# that drift in the machine (thermal, other load, page cache) falls on both alike. Prints one
# Markdown table: mean t/s over the rounds (± the standard deviation across rounds), and
# meshlm / llama.cpp. Run it on a quiet machine; the README's Speed section says how.
#   scripts/bench_vs_llamacpp.sh MODEL.gguf LLAMA_CPP_BUILD_DIR [THREADS (e.g. 1,2,8)] [ROUNDS (3)]
# Environment: MESHLM (default build/meshlm), REPS (repetitions inside each run, 3),
#   LLAMA_BENCH_ARGS (more llama-bench flags, e.g. "-fa 1"), MESHLM_BENCH_ARGS (e.g. "--mlock"),
#   MEMBW_CMD (a command printing one memory-read-bandwidth figure in GB/s; see below).
set -e
MODEL=${1:?model.gguf}; LLAMA_BUILD=${2:?llama.cpp build directory}
THREADS=${3:-$(nproc)}; ROUNDS=${4:-3}; REPS=${REPS:-3}
HERE="$(cd "$(dirname "$0")/.." && pwd)"
MESHLM=${MESHLM:-$HERE/build/meshlm}
LB=$LLAMA_BUILD/bin/llama-bench
[ -x "$LB" ] || LB=$LLAMA_BUILD/llama-bench
[ -x "$LB" ] || { echo "no llama-bench in $LLAMA_BUILD (or its bin/)" >&2; exit 2; }
[ -x "$MESHLM" ] || { echo "no meshlm binary at $MESHLM (set MESHLM)" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "no $MODEL" >&2; exit 2; }
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT

for t in ${THREADS//,/ }; do
  for r in $(seq 1 "$ROUNDS"); do
    echo "threads $t round $r/$ROUNDS: llama-bench" >&2
    # shellcheck disable=SC2086
    "$LB" -m "$MODEL" -p 128 -n 64 -t "$t" -r "$REPS" -o json $LLAMA_BENCH_ARGS >"$OUT/llama-$t-$r.json" 2>"$OUT/llama.err" ||
      { tail -5 "$OUT/llama.err" >&2; exit 1; }
    echo "threads $t round $r/$ROUNDS: meshlm bench" >&2
    # shellcheck disable=SC2086
    "$MESHLM" bench --model "$MODEL" -p 128 -n 64 -t "$t" -r "$REPS" --json $MESHLM_BENCH_ARGS \
      >"$OUT/meshlm-$t-$r.json" 2>"$OUT/meshlm.err" || { tail -5 "$OUT/meshlm.err" >&2; exit 1; }
  done
done

# Memory read bandwidth, the ceiling of tg on a large model. meshlm has no bandwidth benchmark yet;
# a figure from Python would measure the interpreter, not the memory.
# TODO: when meshlm (or bench/) gains one, call it here by default.
MEMBW=""
if [ -n "$MEMBW_CMD" ]; then MEMBW=$(sh -c "$MEMBW_CMD" 2>/dev/null | tail -1); fi

"$PY" - "$OUT" "$MODEL" "$THREADS" "$ROUNDS" "$REPS" "$MEMBW" <<'PY'
import glob, json, os, statistics, sys
out, model, threads, rounds, reps, membw = sys.argv[1:7]
def mean_sd(v):
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (float("nan"), 0.0)
rows = []
for t in threads.split(","):
    llama = {"pp128": [], "tg64": []}
    ours = {"pp128": [], "tg64": []}
    for r in range(1, int(rounds) + 1):
        for e in json.load(open(f"{out}/llama-{t}-{r}.json")):
            key = f"pp{e['n_prompt']}" if e["n_gen"] == 0 else f"tg{e['n_gen']}"
            if key in llama: llama[key].append(e["avg_ts"])
        m = json.load(open(f"{out}/meshlm-{t}-{r}.json"))
        ours["pp128"].append(m["pp_tps"]); ours["tg64"].append(m["tg_tps"])
        simd = m.get("simd", "?")
    for test in ("pp128", "tg64"):
        (lm, ls), (mm, ms) = mean_sd(llama[test]), mean_sd(ours[test])
        rows.append(f"| {t} | {test} | {lm:.2f} ± {ls:.2f} | {mm:.2f} ± {ms:.2f} | {mm / lm:.2f} |")
info = json.load(open(glob.glob(f"{out}/llama-*.json")[0]))[0]
print(f"model {os.path.basename(model)} ({info.get('model_type', '?')}, {info.get('model_size', 0) / 2**20:.1f} MiB); "
      f"llama.cpp {info.get('build_commit', '?')} (build {info.get('build_number', '?')}), {info.get('cpu_info', '?')}; "
      f"meshlm simd {simd}; {rounds} rounds A/B, {reps} repetitions each")
print(f"memory read bandwidth: {membw + ' GB/s' if membw else 'not measured (TODO: MEMBW_CMD / a meshlm benchmark)'}")
print("| threads | test | llama.cpp t/s | meshlm t/s | meshlm / llama.cpp |")
print("|---|---|---|---|---|")
print("\n".join(rows))
PY
