# Two commands for a new user:   make demo   (the whole path on a bundled model)
#                                 make test   (the full test suite; CI runs exactly this)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo lint test test-fast bench fuzz readme clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	{ command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing (Java for PMML, PostgreSQL for the registry tests, Chromium for the UI tests,"; \
		echo "bubblewrap for the sandbox that opens untrusted model files)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev,zoo]"
	@touch $(STAMP)

demo: setup
	$(BIN)/packager demo

# ruff (lint, then format --check) and mypy, all configured in pyproject.toml; a finding fails `make test` before any test runs.
# tests/ and benchmarks/ are linted with the same rules; pyproject.toml excludes them from the format check (reason there).
LINTED := packager converters tests benchmarks
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# --dist worksteal: a worker that runs out of tests takes some from the other (with the default `load`, one worker sat
# idle for the last 164 s of a 19-minute run while the other finished the 288 s static-checks-off sandbox test and more).
test: setup lint
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=15

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist worksteal -m "not slow"

bench: setup
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/sklearn_onnx_coverage.py
	$(BIN)/python benchmarks/registry_bench.py
	$(BIN)/python benchmarks/transformer_int8.py
	$(BIN)/python benchmarks/format_bench.py
	$(BIN)/python benchmarks/predict_streaming.py
	$(BIN)/python benchmarks/ui_bench.py

# 10,000 mutated files per family through inspect (500 through convert); crash reproducers in $(FUZZ_OUT)
FUZZ_OUT ?= fuzz-crashes
fuzz: setup
	for family in sklearn joblib tensorflow torchscript keras trees boosting; do \
		nice -n 10 $(BIN)/python -m tests.fuzz.harness --family $$family --count 10000 --crashes $(FUZZ_OUT) | tail -1 || exit 1; \
	done

readme: setup
	$(BIN)/python -m packager.matrix README.md

clean:
	rm -rf $(VENV) demo-output *.egg-info
