#!/usr/bin/env bash
# run.sh BUILD FETCHED_DIR: our CUDA GKA op and the authors' Triton op (plus fla's Gated DeltaNet) on the same
# GPU, the same inputs and the same settings (n = 30, a = 0.02), in one call. Prints both tables.
set -euo pipefail
build=${1:-build}
fetched=${2:-.fetched/baseline}
dump=$(mktemp -d)
"$build/bench_gka" --dump "$dump" 256 196 5 32 256 49 10 32 4 4096 16 128
if [[ -d $fetched/fla && -d $fetched/gka_cheb ]]; then
  python3 "$(dirname "$0")/triton_baseline.py" "$fetched" "$dump" 256 196 5 32 256 49 10 32 4 4096 16 128
else
  echo "baseline not run: $fetched has no fla/ and gka_cheb/ (see bench/gka/README.md)"
fi
rm -rf "$dump"
