#!/bin/sh
# Cross-builds meshlm's kernel, weight-format and model tests for aarch64 (Debian's
# g++-aarch64-linux-gnu, cmake/toolchain-aarch64-linux-gnu.cmake) in build-arm64 and runs them
# under qemu-user (-cpu max), so that the NEON code (Highway's NEON target: the f32 kernels and
# kernels_quant_neon-inl.h) runs on x86 machines, CI included. scripts/test.sh runs it as a step of
# its own (MESHLM_SKIP_ARM64=1 skips it). Alone:
#   scripts/install_deps.sh   # once: the cross compiler, qemu-user, the :arm64 packages
#   scripts/test_arm64.sh
set -e
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
case "$(uname -m)" in
  aarch64 | arm64)
    echo "this machine is aarch64: the normal build and tests run the NEON code natively; skipping"
    exit 0
    ;;
esac
for tool in aarch64-linux-gnu-g++ qemu-aarch64; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "$tool missing: run scripts/install_deps.sh (without MESHLM_SKIP_ARM64=1)" >&2
    exit 1
  }
done
# ccache (when installed) keys objects by paths relative to the checkout, as in scripts/test.sh.
export CCACHE_BASEDIR="$(pwd)"
t0=$(date +%s)
cmake -S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake \
  -DMESHLM_WITH_MPI=OFF -DMESHLM_WITH_DISCOVERY=OFF -DMESHLM_BUILD_BENCH=OFF >/dev/null
# The test executables of the kernels, the weight formats and the model only: no processes of
# their own (tp_stage_tests' members are threads over loopback TCP). Their directories' ctest
# files hold nothing else but the model fixtures (below).
TARGETS="kernels_parity_test thread_pool_test formats_tests model_tests tp_stage_tests"
DIRS="tests/kernels tests/formats tests/model"

ninja -C build-arm64 -j"$JOBS" $TARGETS
t1=$(date +%s)

# model_tests' fixture (golden_model_setup, tests/model/make_golden_model.sh) writes the golden
# model with ../shared's generator; without it (or the npm tokenizer), with `meshlm synth`: the
# x86 build's meshlm when there is one (scripts/test.sh built it), else the aarch64 one, built
# only then, under qemu. Made here, so that ctest's run of the fixture finds it complete.
golden=build-arm64/models/qwen3-tiny-synth
meshlm="$(pwd)/build/meshlm"
# The aarch64 meshlm under qemu, built only when there is no x86 one.
qemu_meshlm() {
  ninja -C build-arm64 -j"$JOBS" meshlm
  meshlm="$(pwd)/build-arm64/meshlm-qemu"
  printf '#!/bin/sh\nexec qemu-aarch64 -L / -cpu max "%s" "$@"\n' "$(pwd)/build-arm64/meshlm" >"$meshlm"
  chmod +x "$meshlm"
}
[ -x "$meshlm" ] || meshlm=/nonexistent
rc=0
tests/model/make_golden_model.sh "$golden" "$meshlm" || rc=$?
if [ "$rc" = 77 ]; then
  qemu_meshlm
  tests/model/make_golden_model.sh "$golden" "$meshlm"
elif [ "$rc" != 0 ]; then
  exit "$rc"
fi
# The MoE model of moe_test.cpp (moe_model_setup then finds it complete), with meshlm synth.
[ -x "$meshlm" ] || qemu_meshlm
tests/model/make_moe_model.sh build-arm64/models/qwen3-moe-tiny-synth "$meshlm"
# The tensor-parallel models of tp_stage_test.cpp (tp_models_setup then finds them complete).
tests/model/make_tp_models.sh build-arm64/models/tp-synth "$meshlm"

# Tests left out under qemu (10-30x slower than native), each for its run time there (2 loaded
# x86 cores); they run natively in the x86 suite and on aarch64 machines, and the NEON kernels'
# batch and thread invariance is the kernel parity tests' (QuantMatmulParity, MatmulDeterminism):
#   Stage.CpuBackendAgreesWithTheReferenceBackend       150 s
#   Stage.ChunkSizeAndThreadsDoNotChangeLogits          105 s
#   Stage.SplitsGiveBitIdenticalLogits                   80 s
#   Golden.GreedyIdsAndLogitsMatchLlamaCpp/ref          112 s (the scalar reference backend: no
#                                                              NEON code; /cpu and /gguf run)
SLOW='^Stage\.(CpuBackendAgreesWithTheReferenceBackend|ChunkSizeAndThreadsDoNotChangeLogits|SplitsGiveBitIdenticalLogits)$'
SLOW="$SLOW|^Backends/Golden\.GreedyIdsAndLogitsMatchLlamaCpp/ref( |$)"
for d in $DIRS; do
  echo "-- $d (aarch64, qemu-user)"
  (cd "build-arm64/$d" && ctest --output-on-failure -j"$JOBS" --timeout 600 -E "$SLOW")
done
t2=$(date +%s)
# The Highway targets the kernels were built for and qemu ran (the parity tests run each one).
targets=$(cd build-arm64/tests/kernels && ctest -N -R '^Targets/QuantMatmulParity' |
  sed -n 's|.*/\([A-Z0-9_]*\)  *#.*|\1|p; s|.*/\([A-Z0-9_]*\)$|\1|p' | sort -u | tr '\n' ' ')
echo "aarch64: build $((t1 - t0)) s, tests under qemu-user $((t2 - t1)) s," \
  "Highway targets: $targets"
