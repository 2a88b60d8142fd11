#!/usr/bin/env bash
# run.sh BUILD FETCHED_DIR [BATCH]: our networks (bench_model) and the PyTorch reference
# (torch_reference.py: bf16 autocast, the GKA authors' Triton op for the recurrence) on the same GPU, in one
# call. The reference's first step compiles and autotunes Triton kernels (about 150 s on an H100).
set -u
build=${1:-build}
fetched=${2:-.fetched/baseline}
B=${3:-256}
cd "$(dirname "$0")/../.."
cmake --build "$build" --target bench_model >/dev/null || exit 1
"$build/bench_model" --models gkavision_t,mambavision_t --batch "$B" --steps 20 --warmup 5
python3 bench/model/torch_reference.py --fetched "$fetched" --batch "$B" --models gkavision_t,mambavision_t \
  --steps 20 --warmup 5
