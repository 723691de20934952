PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-slow test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so nothing later pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[local,dev,train,ray,view,guard,inspect]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/cotscope demo

# The default run: every test but the slow ones (kept under 15 minutes on 2 cores). CI runs both targets.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu and not slow" --timeout=900 --durations=15

# Training runs, Ray clusters, sandbox escapes, notebook and model-loading checks: minutes each.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow and not gpu" --timeout=1800 --durations=15

test-all: test test-slow

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
