# Every target does its own set-up: a project-local virtualenv with the CPU build of torch, then
# fitlam in editable mode with its dev extras. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= torch==2.13.0

.PHONY: install test test-slow check-export nbtest pytest demo docs export clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# 1. notebooks and modules must not drift, nor grow past the house's sizes; 2. the notebooks' own tests, two at a time,
# one thread each (two processes of two OpenMP threads on two cores spin-wait each other ~25x slower); 3. pytest, last.
test: install
	$(BIN)/python tools/check_export.py
	$(BIN)/python tools/make_readme.py --check
	$(BIN)/python tools/sizes.py
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(BIN)/python -m pytest tests/ -q

test-slow: install
	$(BIN)/nbdev_test --n_workers 1 --flags slow

demo: install
	$(BIN)/fitlam demo

docs: install
	$(BIN)/python tools/build_docs.py --execute

export: install
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(BIN)/python tools/make_readme.py

clean:
	rm -rf $(VENV) _site _docs_src .pytest_cache
