# Two entry points: `make demo` (install + demo) and `make test` (install + whole test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test test-fast lint bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# bubblewrap for the skill sandbox (apt, where we run as root and it is missing)
system-deps:
	bash .ci/system-deps.sh

demo: install
	$(PY) examples/demo.py

test: install system-deps
	$(PY) -m ruff check kb skills mcp_server tests benchmarks examples
	$(PY) -m pytest -q

test-fast: install system-deps
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check kb skills mcp_server tests benchmarks examples
	$(PY) -m ruff format --check kb skills mcp_server tests benchmarks examples
	$(PY) -m mypy

bench: install
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_search.py
