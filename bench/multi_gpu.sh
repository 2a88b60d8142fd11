#!/usr/bin/env bash
# multi_gpu.sh OUT [GPUS...]: data-parallel scaling of GKAVision-T training on one node (default GPU counts:
# 1 and every power of two up to the GPUs present). Builds for sm_90, runs test_launch, makes a synthetic
# ImageNet-shaped folder (gkav data synth: 1000 classes of ~500x375 JPEGs), then for each count trains
# GKAVision-T with recipe B (batch 256 per GPU, RandAugment, mixup/cutmix, erasing; 16 loader threads per
# GPU) for 45 steps and reads images/s over steps 16-45 from the log. Prints the table with the scaling
# efficiency against the 1-GPU run. Logs in OUT.
set -u
OUT=${1:-out}
shift || true
mkdir -p "$OUT"
ngpu=$(nvidia-smi -L | wc -l)
counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then
  counts=(1)
  for ((g = 2; g <= ngpu; g *= 2)); do counts+=("$g"); done
fi
if compgen -G ".deps/debs/*.deb" >/dev/null; then for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/prefix; done; fi
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sort | uniq -c
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1
if ! cmake --build build -j"$(nproc)" --target gkav test_launch >"$OUT/build.log" 2>&1; then
  grep -E "error" "$OUT/build.log" | head -30
  exit 1
fi
echo "build: $(($(date +%s) - t0)) s"
build/test_launch | tail -1
data=${GKAV_SYNTH_DIR:-/tmp/gkav_synth}
# enough images that 45 steps of the largest count stay inside one epoch (no evaluation or checkpoint among them)
n_train=${GKAV_SYNTH_TRAIN:-25600}
build/gkav data synth "$data" --classes 1000 --train "$n_train" --val 1000 --workers "$(nproc)"
B=${GKAV_BATCH:-256}
per_gpu_workers=${GKAV_WORKERS:-16}
printf '%-6s %12s %12s %10s\n' gpus images/s per-gpu scaling >"$OUT/scaling.txt"
one=""
for g in "${counts[@]}"; do
  run="$OUT/t_${g}gpu"
  rm -rf "$run"
  timeout 300 build/gkav train --model gkavision_t --data-dir "$data" --device cuda --gpus "$g" --batch-size "$B" \
    --workers "$per_gpu_workers" --max-steps 45 --log-interval 15 --limit-eval 256 --output "$run" \
    >"$OUT/train_${g}gpu.log" 2>&1
  echo "--- $g GPU(s): exit $?"
  grep -E "^training|^epoch|error|gkav train" "$OUT/train_${g}gpu.log" | head -8
  ips=$(grep -E "^epoch .* img/s" "$OUT/train_${g}gpu.log" | tail -2 | awk '{ for (i = 1; i <= NF; i++) if ($i == "img/s") { s += $(i - 1); n++ } } END { if (n) printf "%.1f", s / n }')
  [ -z "$ips" ] && continue
  [ "$g" = 1 ] && one=$ips
  awk -v g="$g" -v x="$ips" -v o="$one" 'BEGIN { e = o ? sprintf("%.1f%%", 100 * x / (g * o)) : "-";
    printf "%-6d %12.1f %12.1f %10s\n", g, x, x / g, e }' >>"$OUT/scaling.txt"
done
echo "GKAVision-T, recipe B, batch $B per GPU, images/s over steps 16-45 (scaling: images/s over GPUs x 1-GPU images/s)"
cat "$OUT/scaling.txt"
echo "all done: $(($(date +%s) - t0)) s"
