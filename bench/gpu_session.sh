#!/usr/bin/env bash
# gpu_session.sh OUT: one device-machine session: build for sm_90 (the Debian .debs carried in .deps/debs
# unpacked first), the GPU tests (ctest -L gpu, verbose), then GKAVision-nano trained on the GPU with
# configs/fashion_mnist_gpu.cfg (Fashion-MNIST from .deps/fmnist), evaluated and asked about one image on the
# GPU and the CPU (timed: start-up and model load included), then the kernel lab. Logs in OUT.
set -u
OUT=${1:-out}
mkdir -p "$OUT"
if compgen -G ".deps/debs/*.deb" >/dev/null; then for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/prefix; done; fi
t0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tail -1
python3 -c "import mamba_ssm" 2>&1 | tail -1; python3 -c "import timm; print('timm', timm.__version__)" 2>&1 | tail -1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1
targets="gkav bench_kernels test_ops test_gka_gpu test_gka_layer test_batch test_optim test_blocks test_models_gpu"
if ! cmake --build build -j"$(nproc)" --target $targets >"$OUT/build.log" 2>&1; then
  grep -E "error" "$OUT/build.log" | head -30
  exit 1
fi
echo "build: $(($(date +%s) - t0)) s"
(cd build && ctest -L gpu -V --timeout 120) >"$OUT/ctest_gpu.log" 2>&1
grep -E "^ *[0-9]+/[0-9]+ Test|tests passed|FAIL" "$OUT/ctest_gpu.log" | head -60
echo "tests done: $(($(date +%s) - t0)) s"
data=fashion-mnist
[ -d .deps/fmnist ] && data=fashion-mnist:.deps/fmnist
t1=$(date +%s)
timeout 480 build/gkav train --config configs/fashion_mnist_gpu.cfg --data-dir "$data" --output "$OUT/fm_gpu" \
  >"$OUT/train_gpu.log" 2>&1
grep -E "^epoch [0-9]+:" "$OUT/train_gpu.log" | sed -n '1p;5p;10p;20p;30p'
tail -3 "$OUT/train_gpu.log"
echo "training wall: $(($(date +%s) - t1)) s"
ck="$OUT/fm_gpu/model_best.safetensors"
for d in cuda cpu; do
  build/gkav eval --model gkavision_nano --checkpoint "$ck" --data-dir "$data" --device $d 2>&1 | tail -2
  s=$(date +%s%N)
  build/gkav classify --model gkavision_nano --checkpoint "$ck" --device $d "$OUT/fm_gpu/example.png"
  echo "classify on $d: $((($(date +%s%N) - s) / 1000000)) ms wall, start-up and model load included"
done
build/bench_kernels >"$OUT/bench_kernels.log" 2>&1
cat "$OUT/bench_kernels.log"
echo "all done: $(($(date +%s) - t0)) s"
