# keystone-prom-wasm: every entry point a user or CI needs.
SHELL := /bin/bash
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/keystone_prom_wasm.wasm
VENV := .venv

.PHONY: build test unit wasm-test manifests e2e demo demo-down deps lint clean fuzz bench bench-stages bench-loop dist

build: $(WASM)

$(WASM): Cargo.toml .cargo/config.toml $(shell find src -name '*.rs' 2>/dev/null)
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)
	cargo build --release --target $(WASM_TARGET) --lib
	@ls -l $(WASM)

# Release files in dist/: the .wasm, its sha256, and an OCI image (layout and tar) of the
# Wasm artifact for Istio's oci:// URLs, built without a container daemon; see scripts/dist.py.
dist: build
	python3 scripts/dist.py

# System packages and the Python venv (Envoy, pytest); idempotent.
deps:
	bash scripts/stack.sh install

# Native unit and property tests of the core and the host adapter (mock host). The request
# flow's tests run twice: the mock host as Envoy, then as NGINX's ngx_wasm_module.
unit:
	cargo test --lib --test properties --test schema --test promql_fidelity
	KPW_MOCK_HOST=nginx cargo test --lib flow::

# The core compiled to Wasm, run under node by wasm-bindgen-test.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/[^0-9.]/,""); print}' Cargo.lock)
wasm-test:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" || \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
	  cargo test --target wasm32-unknown-unknown --test wasm

e2e: build deps
	$(VENV)/bin/python -m pytest -v tests/e2e

# Deployment files (Envoy, Istio, NGINX) against the schema, the parser and `envoy --mode validate`.
# tests/dist: the release files of `make dist` (checksum, OCI image layout and tar).
manifests: build deps
	$(VENV)/bin/python -m pytest -v tests/examples tests/dist

test: unit wasm-test manifests e2e

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
	for t in enforce request remote_write remote_read; do \
	  mkdir -p fuzz/corpus/$$t && \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done

# Throughput and latency against plain Envoy, a no-op Wasm filter and Aetos, and remote write
# (samples per Envoy CPU-second, the filter's cost per batch against the native cost of the
# same work); writes docs/benchmark.md and docs/benchmark.svg. Not a test: takes ~15-18 minutes.
bench: build deps
	bash bench/run.sh

# Native timings of each stage of the request path and of remote write's decode, enforce and
# encode (criterion), to see where time goes.
bench-stages:
	cargo bench --manifest-path bench/stages/Cargo.toml

# The whole dashboard request through the core, compiled to Wasm and run by node's V8
# with TurboFan only, as Envoy runs V8 (proxy-wasm-cpp-host turns Liftoff off); then one
# credential digest alone; then the write workload's decode -> enforce -> encode of a
# 2,000-sample remote write batch, in V8 and natively. LOOP_ARGS="40000 cold" sweeps the CPU
# caches between requests; to profile, add PROFILE="perf record -F 5000 -o perf.data" and
# --perf-basic-prof to NODE_FLAGS. WRITE_LOOP_ARGS: batches per run (5 runs).
LOOP_ARGS ?= 200000
WRITE_LOOP_ARGS ?= 200
NODE_FLAGS ?= --no-liftoff
STAGES_TARGET = $(or $(CARGO_TARGET_DIR),bench/stages/target)
bench-loop:
	cargo build -q --release --target wasm32-wasip1 --manifest-path bench/stages/Cargo.toml --example request_loop --example digest_loop --example write_loop
	$(PROFILE) node $(NODE_FLAGS) bench/stages/run_wasi.cjs $(STAGES_TARGET)/wasm32-wasip1/release/examples/request_loop.wasm $(LOOP_ARGS)
	node $(NODE_FLAGS) bench/stages/run_wasi.cjs $(STAGES_TARGET)/wasm32-wasip1/release/examples/digest_loop.wasm
	node $(NODE_FLAGS) bench/stages/run_wasi.cjs $(STAGES_TARGET)/wasm32-wasip1/release/examples/write_loop.wasm $(WRITE_LOOP_ARGS)
	cargo run -q --release --manifest-path bench/stages/Cargo.toml --example write_loop -- $(WRITE_LOOP_ARGS)
