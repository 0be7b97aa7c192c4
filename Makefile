# The two commands of the README: `make demo` (the main job) and `make test`.
# Both set everything up from nothing: system packages (apt), a .venv, the package.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint setup system-deps clean bench bench-cuda

setup: $(STAMP)

$(STAMP): pyproject.toml tools/install_system_deps.sh
	bash tools/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,pipeline,fast]'
	touch $(STAMP)

system-deps:
	bash tools/install_system_deps.sh

demo: $(STAMP)
	$(VENV)/bin/edge-infer demo

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_infer tests tools bench
	$(VENV)/bin/lint-imports  # layering contracts: pyproject.toml [tool.importlinter]
	$(VENV)/bin/ruff format --check edge_infer tests tools bench

# --durations: CI's log names the slowest tests (the suite's time is watched: ~12 min aim);
# EI_PREWARM=1: cold kernel objects compiled in the background at nice 19 (tests/prewarm.py)
test: $(STAMP) lint
	EI_PREWARM=1 $(PY) -m pytest -q --durations=30

bench: $(STAMP)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) bench/engine.py

# BENCHMARKS.md's CUDA kernel table: ptxas resources for sm_87, occupancy, emulator time
bench-cuda: $(STAMP)
	$(PY) bench/cuda_kernels.py --sm 87

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo-out
