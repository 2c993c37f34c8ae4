# Maestro: `make run` starts the service with embedded defaults, `make test` runs every check.
# libtorch comes from PyPI's torch in a cached venv (see scripts/provision-torch.sh) unless LIBTORCH
# points at an existing libtorch.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
CARGO ?= cargo
ENV := source scripts/env.sh &&

.PHONY: all build run test check-no-torch check-deps docs bench bench-onnx bench-streams soak fuzz fixtures dashboard fmt clippy clean-cache

all: build

build:
	$(ENV) $(CARGO) build --release --workspace --bin maestro-server --bin maestro

run:
	$(ENV) $(CARGO) build --release --bin maestro-server
	./target/release/maestro-server $(ARGS)

# Lints (the fuzz target included), the build without libtorch, the CLI's dependency check, every
# Rust test (tests/node_examples.rs runs the Node.js examples with the machine's node; tests/config.rs,
# api_docs.rs and openapi.rs check the generated docs, tests/doc_links.rs every Markdown link), then the
# Python client against the debug server that `cargo test` built.
test: check-deps
	$(CARGO) fmt --all --check
	$(ENV) $(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) check-no-torch
	scripts/provision-tools.sh
	scripts/provision-node.sh
	$(ENV) $(CARGO) test --workspace
	$(ENV) clients/python/run_tests.sh
	scripts/gpu-check.sh self-test

# The library, its tests and benches, and the fuzz target as `cargo fuzz` builds it: all without
# libtorch, in the same target directory. Linting is a full type-check; only nightly links the
# fuzz target with its sanitizers (`make fuzz`).
check-no-torch:
	$(ENV) $(CARGO) clippy -p maestro -p maestro-fuzz --no-default-features --all-targets -- -D warnings

# Rewrites the generated docs after the options or the protos change: docs/configuration.md's table,
# docs/api.md and docs/openapi.json. None needs libtorch.
docs:
	$(ENV) UPDATE_DOCS=1 $(CARGO) test --no-default-features --test config --test api_docs
	$(ENV) UPDATE_OPENAPI=1 $(CARGO) test --no-default-features --test openapi

# `maestro-cli` depends on no server-only crate (libtorch, NVML, the system sampler).
check-deps:
	$(ENV) scripts/check-cli-deps.sh

bench:
	$(ENV) $(CARGO) bench --bench telemetry
	$(ENV) $(CARGO) bench --bench rpc
	$(ENV) $(CARGO) bench --bench musicgen
	$(ENV) $(CARGO) bench --bench cpu_paths
	$(ENV) $(CARGO) bench --bench goals
	$(ENV) $(CARGO) bench --bench generation
	$(MAKE) bench-streams

# The ONNX Runtime anchor alone: the same musicgen-small-shaped weights exported by optimum, fp32 and
# int8 (quantize_dynamic, per channel), decoder loop only, 2 threads. `make bench` runs it from the
# goals benchmark, beside Maestro's int8 through the service, for the ratio in one run. Its venv
# (scripts/provision-onnx.sh, ~7 GB with torch's CUDA wheels) is installed once, outside `make test`.
SMALL_SHAPE ?= $(HOME)/.cache/maestro/musicgen-small-shape
bench-onnx:
	$(ENV) { [ -f "$(SMALL_SHAPE)/model.safetensors" ] || python3 scripts/make_reference.py --small-shape "$(SMALL_SHAPE)"; } \
		&& "$$(scripts/provision-onnx.sh)" scripts/bench_onnx.py "$(SMALL_SHAPE)"

# The matrix-vector product's row order in isolation (plain C++, no libtorch): adjacent rows against
# the page walk `csrc/cpu_kernels.cpp` uses.
bench-streams:
	mkdir -p target
	$(CXX) -O3 -std=c++17 -fopenmp benches/native/gemv_streams.cpp -o target/gemv_streams
	./target/gemv_streams 700 64

SOAK_SECONDS ?= 600

# Mixed workload against a release server, then leak checks (not part of `make test`).
soak: build
	$(ENV) $(CARGO) run --release --example soak -- $(SOAK_SECONDS)

FUZZ_SECONDS ?= 600
FUZZ_TARGETS := requests pickle checkpoint_layout audio_input config_file

# Coverage-guided fuzzing of every parser (nightly and cargo-fuzz, installed from crates.io once;
# not part of `make test`, which runs the same checks as property tests), FUZZ_SECONDS per target.
# Seeds come from the fixtures (examples/fuzz_seeds.rs); an input slower than 10 s or a process over
# 2 GiB is a finding too. Findings land in fuzz/artifacts/<target>/.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	$(ENV) $(CARGO) run --quiet --no-default-features --example fuzz_seeds -- fuzz/corpus
	for target in $(FUZZ_TARGETS); do \
	  $(CARGO) +nightly fuzz run --debug-assertions $$target -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

# The dashboard's bundle (dashboard/dist/, committed and embedded in the server) from the pinned npm
# packages in dashboard/package-lock.json: the gRPC-Web client generated from proto/, then bundled.
# Neither `make run` nor `make test` rebuilds it (`make test` runs node only for clients/node's examples).
dashboard:
	cd dashboard && npm ci --no-audit --no-fund && npm run build

fixtures:
	$(ENV) python3 scripts/make_reference.py --out tests/fixtures

fmt:
	$(CARGO) fmt --all

clean-cache:
	rm -rf "$${MAESTRO_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/maestro}"
