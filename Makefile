# Two entry points: `make demo` (install + demo) and `make test` (install + whole test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps inspector demo test test-fast lint bench

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

# The official MCP Inspector (its CLI mode is a test client), where npm is available; 0.15.0 is the
# newest that runs on Node 18-20. Without npm its test skips and says why.
INSPECTOR := $(VENV)/inspector/node_modules/.bin/mcp-inspector
inspector: install
	@if [ -x $(INSPECTOR) ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(VENV)/inspector \
	    @modelcontextprotocol/inspector@0.15.0 || echo "could not install the MCP Inspector"; \
	else echo "npm not found: the MCP Inspector test will be skipped"; fi

demo: install
	$(PY) examples/demo.py

test: install system-deps inspector
	$(PY) -m ruff check kb skills mcp_server tests benchmarks examples
	$(PY) -m pytest -q

test-fast: install system-deps
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check kb skills mcp_server tests benchmarks examples
	$(PY) -m ruff format --check kb skills mcp_server tests benchmarks examples
	$(PY) -m mypy

bench: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_peers.py
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_search.py
