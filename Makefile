# Every target sets up what it needs: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench fuzz seed-fixtures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fusionkit up configs/demo.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

fuzz: $(STAMP)
	FUSIONKIT_FUZZ_EXAMPLES=3000 $(BIN)/pytest -q tests/test_fuzz.py

# Re-record what the published fusionkit-server 0.1.1 answers (tests/seed/fixtures): the seed in its own
# venv in a temp dir, over the stand-in upstream. Needs the package index; `make test` never does.
SEED_VERSION ?= 0.1.1
seed-fixtures:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/pip" install --quiet fusionkit-core==$(SEED_VERSION) fusionkit-server==$(SEED_VERSION) && \
	cd "$$tmp" && PYTHONPATH="$(CURDIR)" "$$tmp/venv/bin/python" -m tests.seed.record --out "$(CURDIR)/tests/seed/fixtures"

clean:
	rm -rf $(VENV) .fusionkit .pytest_cache .mypy_cache .ruff_cache
