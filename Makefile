# sim2real: every target installs what it needs into .venv/ first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch is pinned to the CPU wheel; other specs pull GBs of CUDA packages.
TORCH  ?= torch==2.13.0
EXTRAS ?= datagen,train,export,runtime,ros,eval,deploy,dev

.PHONY: help install run test test-unit test-integration bench heldout clean

help:
	@echo "make run    - the whole pipeline on the built-in CPU defaults (artifacts/latest/)"
	@echo "make test   - unit, integration and stack tests (installs redis-server, qemu-user, ign sdf, docker.io if missing)"
	@echo "make bench  - benchmarks; writes artifacts/bench.json"
	@echo "make heldout - the held-out suite with the latest model, policy beside expert (artifacts/heldout/suite.md)"
	@echo "make images - the five container images (CPU flavour, offline build)"
	@echo "make test-stack - only the containerized stack test (real Docker engine)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sim2real run $(RUN_ARGS)

# Unit, integration and stack tests; the stack test installs and starts a Docker engine if needed.
test: $(STAMP)
	@bash scripts/install-system-deps.sh
	$(PY) -m pytest -q -rs tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	@bash scripts/install-system-deps.sh
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# The containerized stack end to end (starts a Docker engine when none runs).
test-stack: $(STAMP)
	$(PY) -m pytest -q tests/unit/test_hadolint.py tests/stack $(PYTEST_ARGS)

# The five images, CPU flavour: local debootstrap base, host-side wheelhouse, --no-index installs.
# IMAGES_ARGS="--flavour vendor" builds FROM the vendor images instead.
images:
	bash scripts/docker-engine.sh
	bash scripts/build-images.sh $(IMAGES_ARGS)

# The held-out suite (never used to tune) with the newest `make run` model; HELDOUT_ARGS="--workers 2".
HELDOUT_MODEL ?= artifacts/latest/model/model.int8.onnx
heldout: $(STAMP)
	$(VENV)/bin/sim2real suite --suite heldout --model $(HELDOUT_MODEL) --out artifacts/heldout $(HELDOUT_ARGS)

bench: $(STAMP)
	$(VENV)/bin/sim2real bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) artifacts build .pytest_cache
