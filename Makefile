# GKAVision: `make run` builds and runs the main job; `make test` runs the test suite (CPU + sanitizers);
# `make test-gpu` runs the GPU tests (on a machine with one); `make bench` runs the benchmarks.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-cpu test-asan test-gpu bench clean

all: build

deps:
	@tools/deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job: GKAVision-nano trained on Fashion-MNIST (configs/fashion_mnist.cfg; ~5 minutes on 2 cores),
# then the exported best weights evaluated on the test split and asked about one test image.
RUN_DIR ?= runs/fashion_mnist
run: build
	@tools/deps.sh run
	rm -rf $(RUN_DIR)
	./$(BUILD)/gkav train --config configs/fashion_mnist.cfg --output $(RUN_DIR)
	./$(BUILD)/gkav eval --model gkavision_nano --checkpoint $(RUN_DIR)/model_best.safetensors --data-dir fashion-mnist
	./$(BUILD)/gkav classify --model gkavision_nano --checkpoint $(RUN_DIR)/model_best.safetensors $(RUN_DIR)/example.png

test: test-cpu test-asan

test-cpu: build
	cd $(BUILD) && ctest --output-on-failure -LE gpu -j $(JOBS)

# The CPU tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DGKA_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -LE "gpu|slow" -j $(JOBS)

test-gpu: build
	cd $(BUILD) && ctest --output-on-failure -L gpu

bench: build
	@tools/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) build-asan
