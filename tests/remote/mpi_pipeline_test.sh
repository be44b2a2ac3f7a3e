#!/bin/sh
# Every architecture (qwen3, qwen2, llama, mistral) on 2, 3 and 4 MPI ranks is bit-identical to
# one stage (remote_mpi_pipeline_test), with MPI_THREAD_MULTIPLE and once with SERIALIZED.
# usage: mpi_pipeline_test.sh MESHLM MPIEXEC TEST_BIN WORK_DIR
set -e
meshlm=$1 mpiexec=$2 bin=$3 work=$4
mkdir -p "$work"
dirs=""
for arch in qwen3 qwen2 llama mistral; do
  d="$work/synth-$arch-mpi"
  if [ ! -f "$d/config.json" ]; then
    extra=""
    [ "$arch" = llama ] && extra=--untied
    rm -rf "$d.tmp"
    "$meshlm" synth --arch "$arch" --out "$d.tmp" --hidden 64 --intermediate 128 --layers 4 \
      --heads 4 --kv-heads 2 --head-dim 16 --vocab 384 --dtype bf16 --seed 11 $extra >/dev/null
    rm -rf "$d" && mv "$d.tmp" "$d"
  fi
  dirs="$dirs $d"
done
run() {
  np=$1
  shift
  echo "== $np ranks $*"
  "$mpiexec" --allow-run-as-root --oversubscribe "$@" -np "$np" "$bin" $dirs
}
export MESHLM_LOG=warn
run 2
run 3
run 4
MESHLM_MPI_THREAD=serialized run 3 -x MESHLM_MPI_THREAD
echo "remote_mpi_pipeline: all identical"
