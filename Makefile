# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-fast lint apidocs bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned here: a looser requirement would pull a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m sidkit.demo

# Everything, the Ray integration test (marked slow: it starts a local Ray) included.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# The API reference from the docstrings (pdoc): build/apidocs/index.html.
apidocs: $(STAMP)
	$(BIN)/python scripts/build_apidocs.py build/apidocs

# Benchmark peers; then run any script in benchmarks/ (see docs/benchmarks.md for the commands).
bench: $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,ray,bench]"

# Headless Chromium for the HTML report test (the test also runs this when Chromium is missing).
chromium:
	bash scripts/install_chromium.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
