#!/usr/bin/env bash
# bench.sh BUILD: every benchmark that this machine can run (`make bench`). Without a GPU only the loader's;
# with one also the networks (bench_model), the memory-bound kernels (bench_kernels) and the GKA operator
# against the authors' Triton op (when .fetched/baseline holds it: see bench/gka/run.sh).
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
cmake --build "$build" --target bench_loader bench_model bench_kernels bench_gka >/dev/null || exit 1
echo "== loader (bench/loader/run.sh)"
bench/loader/run.sh "$build"
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU: the GPU benchmarks are skipped"
  exit 0
fi
echo "== networks, batch 256 (bench_model)"
"$build/bench_model" --models gkavision_t,mambavision_t --batch 256
echo "== memory-bound kernels (bench_kernels)"
"$build/bench_kernels"
echo "== GKA operator (bench/gka/run.sh)"
bench/gka/run.sh "$build" .fetched/baseline
