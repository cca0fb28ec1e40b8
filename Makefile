# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing and installs the package with the pinned constraints
# (torch==2.13.0, the CPU build), so a fresh clone needs only Python 3.11 and the registry.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-seeds lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,lightning,bench,tensorboard,hf,postgres]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nnrecipe demo --out runs/demo

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 --durations=15

# Every statistical test on seeds 0-9 (not part of CI's single run; run before relying on one).
test-seeds: $(STAMP)
	for s in 0 1 2 3 4 5 6 7 8 9; do NNRECIPE_TEST_SEED=$$s $(BIN)/python -m pytest -n 2 -q -m statistical -p no:randomly || exit 1; done

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
