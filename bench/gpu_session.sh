#!/usr/bin/env bash
# gpu_session.sh OUT: one device-machine session: build for sm_90 (the Debian .debs carried in .deps/debs
# unpacked first), the GPU tests (ctest -L gpu, verbose), then GKAVision-nano trained on the GPU with the
# CPU main job's recipe (Fashion-MNIST from .deps/fmnist), evaluated and asked about one image. Logs in OUT.
set -u
OUT=${1:-out}
mkdir -p "$OUT"
if compgen -G ".deps/debs/*.deb" >/dev/null; then for d in .deps/debs/*.deb; do dpkg -x "$d" .deps/prefix; done; fi
t0=$(date +%s)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1
targets="gkav test_ops test_gka_gpu test_gka_layer test_batch test_optim test_blocks test_models_gpu"
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
build/gkav train --config configs/fashion_mnist.cfg --data-dir "$data" --device cuda --workers 8 \
  --output "$OUT/fm_gpu" >"$OUT/train_gpu.log" 2>&1
tail -4 "$OUT/train_gpu.log"
build/gkav eval --model gkavision_nano --checkpoint "$OUT/fm_gpu/model_best.safetensors" --data-dir "$data" --device cuda
build/gkav classify --model gkavision_nano --checkpoint "$OUT/fm_gpu/model_best.safetensors" --device cuda "$OUT/fm_gpu/example.png"
echo "all done: $(($(date +%s) - t0)) s"
