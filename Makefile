# livedepth: two commands on a fresh Debian/Ubuntu machine.
#   make demo   the main job (installs what is missing first)
#   make test   the test suite, clippy and the format check (installs what is missing first)
SHELL := /bin/bash
CARGO ?= cargo
OUT ?= out/demo

.PHONY: setup demo test fmt lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(CARGO) run --release -- demo --out $(OUT)

# The cuda feature builds everywhere (cudarc loads CUDA at run time); GPU tests skip without a GPU.
FEATURES ?= cuda

test: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features $(FEATURES) -- -D warnings
	$(CARGO) test --features $(FEATURES)

fmt:
	$(CARGO) fmt

bench: setup
	$(CARGO) run --release -- bench all
