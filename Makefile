# sim2real: every target installs what it needs into .venv/ first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU wheel; other specs pull GBs of CUDA packages.
TORCH  ?= torch==2.13.0
EXTRAS ?= datagen,train,export,runtime,ros,eval,deploy,dev

.PHONY: help install run test test-unit test-integration bench clean

help:
	@echo "make run    - the whole pipeline on the built-in CPU defaults (artifacts/latest/)"
	@echo "make test   - unit and integration tests (installs redis-server if missing)"
	@echo "make bench  - benchmarks; writes artifacts/bench.json"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sim2real run $(RUN_ARGS)

test: $(STAMP)
	@command -v redis-server >/dev/null 2>&1 || bash scripts/install-system-deps.sh
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/sim2real bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) artifacts .pytest_cache
