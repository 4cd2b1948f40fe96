# livedepth: two commands on a fresh Debian/Ubuntu machine.
#   make demo   the main job (installs what is missing first)
#   make test   the test suite, clippy and the format check (installs what is missing first)
SHELL := /bin/bash
CARGO ?= cargo
OUT ?= out/demo

.PHONY: setup demo test fmt lint bench base-model jetson

setup:
	@bash scripts/setup.sh

demo: setup
	$(CARGO) run --release -- demo --out $(OUT)

# The cuda and tensorrt features build everywhere (cudarc loads CUDA, our TensorRT shim loads
# libnvinfer, both at run time); GPU and TensorRT tests skip without them, saying why.
FEATURES ?= cuda,tensorrt

# The tests, the first clippy and the aarch64 check turn on `bench` (the kernels' CPU twins, the
# kernel benchmarks and `livedepth bench`: test and benchmark code, off by default); the second
# clippy is the deployment build without it, so the product compiles alone.
# The aarch64 check builds everything for a Jetson (CUDA 12.6 API, `jetpack6`) without linking:
# pkg-config may answer from the x86-64 .pc files, since a check links nothing.
test: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features bench,$(FEATURES) -- -D warnings
	$(CARGO) clippy --all-targets --no-default-features --features torch,onnxruntime,$(FEATURES) -- -D warnings
	PKG_CONFIG_ALLOW_CROSS=1 $(CARGO) check --target aarch64-unknown-linux-gnu --all-targets --features bench,jetpack6,tensorrt
	$(CARGO) test --features bench,$(FEATURES)

fmt:
	$(CARGO) fmt

# Cross-build for aarch64 (Jetson, JetPack 6 CUDA API) and run a smoke suite under qemu-aarch64
# (scripts/jetson.sh; installs what it needs once; about 25 minutes the first time).
jetson: setup
	@bash scripts/jetson.sh

# Every benchmark, each printing its ratio against a peer measured in the same run (`bench adapt`
# compares GPU and CPU and says so where there is no GPU).
BENCHES ?= infer loss live-adapt recording adapt
bench: setup
	$(CARGO) build --release --features bench
	@set -e; for b in $(BENCHES); do echo "== livedepth bench $$b"; target/release/livedepth bench $$b; done

# Our own base model (see docs/adapt.md): renders BASE_DRIVES synthetic car drives (fixed seeds,
# speeds and traffic varied) at the network size and trains RT-MonoDepth-S + its light pose
# network from scratch with a fixed seed: supervised scale-invariant depth and supervised pose
# from the exact ground truth, plus the self-supervised loss. About 35-45 minutes on 2 busy cores.
BASE_W ?= 320
BASE_H ?= 96
BASE_DRIVES ?= 12
BASE_FRAMES ?= 120
BASE_EPOCHS ?= 5
BASE_DATA ?= out/base-model/drives
BASE_OUT ?= models/base_$(BASE_W)x$(BASE_H)
RUN_NICE ?= nice -n 10

base-model: setup
	$(CARGO) build --release
	@set -e; specs=""; \
	for i in $$(seq 1 $(BASE_DRIVES)); do \
	  dir=$(BASE_DATA)/drive_$$i; \
	  if [ ! -f $$dir/render.json ]; then \
	    $(RUN_NICE) target/release/livedepth render --out $$dir --quiet \
	      --frames $(BASE_FRAMES) --width $(BASE_W) --height $(BASE_H) --seed $$((100 + i)) \
	      --speed $$((6 + i % 6)) --moving-objects $$((i % 3)); \
	  fi; \
	  specs="$$specs --dataset kitti:$$dir"; \
	done; \
	OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 $(RUN_NICE) target/release/livedepth train $$specs \
	  --out $(BASE_OUT) --width $(BASE_W) --height $(BASE_H) --epochs $(BASE_EPOCHS) \
	  --batch-size 8 --lr 4e-4 --pose-lr 4e-4 --seed 7 --supervised-weight 1 \
	  --pose-supervised-weight 1 --self-supervised-weight 1 --checkpoint-every 100 --log-every 25
