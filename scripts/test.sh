#!/bin/sh
# Builds meshlm and runs the whole test suite, then the kernel, format and model tests cross-built
# for aarch64 under qemu-user (scripts/test_arm64.sh; MESHLM_SKIP_ARM64=1 skips it), then the unit
# tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then every fuzz target for
# FUZZ_SECONDS (10) on its seed corpus (scripts/fuzz.sh). Usage: scripts/test.sh [--no-sanitize]
# The sanitizer run leaves out tests labelled "no_sanitize" (RSS and load figures, meaningless
# there) and "heavy" (CLI runs of the golden model's perplexity and similar, 20-60x slower under
# ASan: 500-900 s each; the unit tests exercise the same code); with MESHLM_SKIP_HEAVY=1 the
# gtest cases of that kind skip themselves (tests/common/heavy.h). Each step prints its minutes.
set -e
cd "$(dirname "$0")/.."
START=$(date +%s)
step() { echo "== $1 (at $(( ($(date +%s) - START) / 60 )) min)"; }
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
./scripts/install_deps.sh
# ccache (when installed) keys objects by paths relative to the checkout, so any clone reuses them.
export CCACHE_BASEDIR="$(pwd)"
step "Release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$JOBS"
step "Tests"
(cd build && ctest --output-on-failure -j"$JOBS" --timeout 600)
step "aarch64 cross build + tests under qemu-user"
if [ "${MESHLM_SKIP_ARM64:-0}" = 1 ]; then
  echo "skipped (MESHLM_SKIP_ARM64=1)"
else  # on an aarch64 machine it says so and skips: the tests above ran the NEON code natively
  JOBS="$JOBS" ./scripts/test_arm64.sh
fi
if [ "$1" != "--no-sanitize" ]; then
  step "ASan + UBSan build"
  # -O1 -g1: line numbers in reports at a fraction of the compile time of -O2 -g.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHLM_SANITIZE=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DMESHLM_BUILD_BENCH=OFF >/dev/null
  ninja -C build-asan -j"$JOBS"
  step "Tests under ASan + UBSan"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 MESHLM_SKIP_HEAVY=1 \
    ctest --output-on-failure -j"$JOBS" --timeout 900 -LE "no_sanitize|heavy")
  step "Fuzz targets (libFuzzer + ASan + UBSan, seed corpus, ${FUZZ_SECONDS:-10} s each)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-10} ./scripts/fuzz.sh
fi
step "all tests passed"
