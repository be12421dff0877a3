# Two commands for a new user:   make demo   (the whole path on a bundled model)
#                                 make test   (the full test suite; CI runs exactly this)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-fast bench readme clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v java >/dev/null 2>&1 || { echo "PMML needs Java 11+: installing default-jre-headless"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq default-jre-headless; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all,dev]"
	@touch $(STAMP)

demo: setup
	$(BIN)/packager demo

test: setup
	$(BIN)/python -m pytest -n 2 --durations=15

test-fast: setup
	$(BIN)/python -m pytest -n 2 -m "not slow"

bench: setup
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/sklearn_onnx_coverage.py

readme: setup
	$(BIN)/python -m packager.matrix README.md

clean:
	rm -rf $(VENV) demo-output *.egg-info
