# Every target does its own set-up: a project-local virtualenv with the CPU build of torch, then the
# development environment from requirements/dev.lock (every version pinned, every file hashed), then
# fitlam in editable mode. `make test` is what CI runs (.ci/run); `make lock` refreshes the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TORCH  ?= torch==2.13.0

PIP    := $(BIN)/python -m pip install -q --disable-pip-version-check
LOCK   := requirements/dev.lock

.PHONY: install test test-slow check-export nbtest pytest demo docs export clean lock

# The lock pins the files of one platform (its header says which); elsewhere the ranges of pyproject.toml, said out loud.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	if $(BIN)/python tools/lock.py --matches; then \
	  $(PIP) --require-hashes --no-deps -r $(LOCK) && $(PIP) --no-deps --no-build-isolation -e . ; \
	else \
	  echo "warning: $(LOCK) is for another platform ($$(head -2 $(LOCK) | tail -1)); installing the unlocked ranges of pyproject.toml" >&2; \
	  $(PIP) -e '.[dev]'; \
	fi
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Another machine's CPU kernels: oneDNN and MKL held to AVX2 (the notebooks run again under it, and the trainings of
# tests/ that assert on what was learned), so a threshold that holds only on this machine's rounding fails here.
NUMERICS := ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2

# 1. the lock, and notebooks and modules must not drift, nor grow past the house's sizes; 2. the notebooks' own tests,
# two at a time, one thread each (two processes of two OpenMP threads on two cores spin-wait each other ~25x slower),
# then again with another machine's kernels; 3. pytest, last (with the default two threads).
test: install
	$(BIN)/python tools/lock.py --check
	$(BIN)/python tools/check_export.py
	$(BIN)/python tools/make_readme.py --check
	$(BIN)/python tools/sizes.py
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(NUMERICS) OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2
	$(NUMERICS) $(BIN)/python -m pytest tests/test_models.py tests/test_learner.py -q -p no:cacheprovider
	$(BIN)/python -m pytest tests/ -q

# the notebooks' slow cells, and fitlam installed beside fastai 2.8 from the registry (tests/test_with_fastai.py, minutes)
test-slow: install
	$(BIN)/nbdev_test --n_workers 1 --flags slow
	FITLAM_TEST_FASTAI=1 $(BIN)/python -m pytest tests/test_with_fastai.py -q -p no:cacheprovider

demo: install
	$(BIN)/fitlam demo --force

docs: install
	$(BIN)/python tools/build_docs.py --execute

export: install
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(BIN)/python tools/make_readme.py

# Resolve the development environment afresh (newest versions within pyproject.toml's ranges) and pin it with hashes.
lock: install
	$(BIN)/python tools/lock.py

clean:
	rm -rf $(VENV) _site _docs_src .pytest_cache
