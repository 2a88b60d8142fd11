#!/usr/bin/env bash
# run.sh [BUILD_DIR]: the loader benchmark. Runs bench_loader (GKAVision: decode + RandomResizedCrop +
# flip, and with RandAugment) and torchvision_loader.py (timm's PIL pipeline in a PyTorch DataLoader) on
# the same folder of ~2,000 ImageNet-like JPEGs, at 1, 2 and all cores, and prints one table with images/s,
# images/s per core, and the ratio GKAVision / torchvision. Without torch/torchvision the table says so
# and shows GKAVision's numbers alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
dir=${GKAV_BENCH_DIR:-/tmp/gkav_bench_jpegs}
if [[ ! -x $build/bench_loader ]]; then
  cmake --build "$build" --target bench_loader >/dev/null
fi

# bench_loader makes the folder on first use; its progress lines are not CSV
gk=$("$build/bench_loader" --dir "$dir" --csv | tee /dev/stderr | grep '^gkav,' || true)
if [[ -z $gk ]]; then
  echo "bench_loader produced no results" >&2
  exit 1
fi
tv_note=""
if tv=$(python3 bench/loader/torchvision_loader.py --dir "$dir" 2>/tmp/gkav_bench_tv.err); then
  :
else
  tv=""
  tv_note="torchvision not available ($(tail -n 1 /tmp/gkav_bench_tv.err 2>/dev/null))"
fi
[[ -s /tmp/gkav_bench_tv.err ]] && sed 's/^/  /' /tmp/gkav_bench_tv.err >&2

echo
echo "loader throughput on $dir ($(nproc) cores), images/s from the first batch to the end of the third epoch"
printf '%-12s %7s %12s %10s %14s %10s %8s\n' pipeline cores gkav per-core torchvision per-core ratio
while IFS=, read -r _ mode threads ips; do
  t=$(printf '%s\n' "$tv" | awk -F, -v m="$mode" -v w="$threads" '$2 == m && $3 == w { print $4 }')
  if [[ -n $t ]]; then
    awk -v m="$mode" -v w="$threads" -v g="$ips" -v t="$t" 'BEGIN {
      printf "%-12s %7d %12.1f %10.1f %14.1f %10.1f %7.2fx\n", m, w, g, g / w, t, t / w, g / t }'
  else
    awk -v m="$mode" -v w="$threads" -v g="$ips" 'BEGIN {
      printf "%-12s %7d %12.1f %10.1f %14s %10s %8s\n", m, w, g, g / w, "-", "-", "-" }'
  fi
done <<<"$gk"
[[ -n $tv_note ]] && echo "$tv_note"
exit 0
