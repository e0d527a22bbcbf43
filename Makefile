# ecomine: `make demo` runs the whole platform on the embedded synthetic log;
# `make test` runs the test suite. Both build .venv first when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration bench venv services clean

venv: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on these machines' disk; an
# unpinned torch pulled in by transformers would download a CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

# The live-store tests start a real redis-server (Debian's package) on 127.0.0.1: installed here where missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
services:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package) for the live-store tests"; \
	  $(SUDO) apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q redis-server >/dev/null; }; }

demo: $(STAMP)
	$(BIN)/ecomine demo

test: $(STAMP) services
	$(BIN)/python -m pytest tests -q --durations=20   # the 20 slowest: where the suite's time goes

test-unit: $(STAMP) services
	$(BIN)/python -m pytest tests/unit -q

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

bench: $(STAMP)
	$(BIN)/python benchmarks/data_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
