#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 + ASan + UBSan in build-fuzz and runs each
# for a bounded time on a copy of its committed seed corpus (tests/fuzz/corpus/<target>/), so the
# checkout is never modified. One line per target: executions, exec/s, coverage. A crash, leak,
# timeout or out-of-memory makes the script exit non-zero after printing the reproducer (the
# libFuzzer report, the input as base64 and hex) and keeping the input in build-fuzz/fuzz-crashes/.
#
#   scripts/fuzz.sh                       # every target, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh fuzz_frame fuzz_handshake
#   FUZZ_NO_BUILD=1 scripts/fuzz.sh       # use the targets already built
#
# Reproduce a crash: build-fuzz/tests/fuzz/<target> <crash file>
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECONDS_EACH=${FUZZ_SECONDS:-20}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
CXX_FUZZ=${FUZZ_CXX:-clang++-14}

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  command -v "$CXX_FUZZ" >/dev/null || { echo "fuzz.sh: $CXX_FUZZ not found (scripts/install_deps.sh)"; exit 1; }
  export CCACHE_BASEDIR="$ROOT"
  echo "== Fuzz build ($CXX_FUZZ, ASan + UBSan + libFuzzer) in $BUILD"
  CXX="$CXX_FUZZ" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMESHLM_FUZZ=ON \
    -DMESHLM_BUILD_TESTS=OFF -DMESHLM_BUILD_BENCH=OFF >/dev/null
  ninja -C "$BUILD" -j"$JOBS"
fi

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for f in "$BUILD"/tests/fuzz/fuzz_*; do
    [ -x "$f" ] && [ -f "$f" ] && TARGETS+=("$(basename "$f")")
  done
fi
[ ${#TARGETS[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz targets in $BUILD/tests/fuzz"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshlm-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

echo "== Fuzzing ${#TARGETS[@]} targets, ${SECONDS_EACH} s each"
failed=()
for t in "${TARGETS[@]}"; do
  bin="$BUILD/tests/fuzz/$t"
  [ -x "$bin" ] || { echo "fuzz.sh: no target $bin"; failed+=("$t"); continue; }
  corpus="$WORK/$t/corpus"
  mkdir -p "$corpus" "$WORK/$t/artifacts"
  seeds=0
  if [ -d "tests/fuzz/corpus/$t" ]; then
    cp -r "tests/fuzz/corpus/$t/." "$corpus/"
    seeds=$(find "$corpus" -type f | wc -l)
  fi
  log="$WORK/$t/log"
  rc=0
  # -timeout: one input running this long is a hang; -rss_limit_mb: an input that makes the
  # parser allocate this much is a failure too.
  "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$WORK/$t/artifacts/" "$corpus" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  if [ "$rc" -eq 0 ]; then
    printf '%-24s ok     %10s runs %8s exec/s  cov %-6s ft %-6s (%s seeds)\n' \
      "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$seeds"
    continue
  fi
  printf '%-24s FAILED (exit %s) after %s runs\n' "$t" "$rc" "${runs:-?}"
  failed+=("$t")
  echo "---- $t: libFuzzer report"
  # From the first error line on, without ASan's shadow-memory dump; at most 120 lines.
  awk '/ERROR:|runtime error:|deadly signal|timeout after|out-of-memory|uncaught exception|terminate called/ {on = 1}
       /^Shadow bytes around the buggy address/ {skip = 1}
       /^==[0-9]+==ABORTING/ {skip = 0}
       on && !skip' "$log" | head -n 120
  mkdir -p "$BUILD/fuzz-crashes"
  for a in "$WORK/$t/artifacts/"*; do
    [ -f "$a" ] || continue
    keep="$BUILD/fuzz-crashes/$t-$(basename "$a")"
    cp "$a" "$keep"
    bytes=$(wc -c <"$a" | tr -d ' ')
    echo "---- reproducer: $bytes bytes, kept in $keep"
    echo "     run: $bin $keep"
    echo "     base64: $(base64 -w0 "$a")"
    if [ "$bytes" -le 4096 ]; then
      od -A x -t x1z -v "$a"
    fi
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzzing FAILED: ${failed[*]}"
  exit 1
fi
echo "== fuzzing: ${#TARGETS[@]} targets clean"
