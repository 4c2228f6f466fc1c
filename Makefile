# Every target sets up what it needs: `make demo` and `make test` work from a fresh clone.
#
# Installs come from uv.lock, which pins every package of every extra (with hashes), so a clone
# installs next month what it installs today. uv itself is pinned here and bootstrapped with the
# venv's own pip into .venv/uv, outside the environment it manages. `make upgrade` re-locks.
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
UV_VERSION := 0.13.9
UV         := $(VENV)/uv/bin/uv
STAMP      := $(VENV)/.installed
# --locked: never install anything but the lock. --all-extras: one environment serves every target
# (dev, eval, bench). --compile-bytecode: processes load compiled modules even where
# PYTHONDONTWRITEBYTECODE is set, instead of compiling every import on every start.
SYNC       := $(UV) sync --locked --all-extras --compile-bytecode --quiet
# The project's own sources are installed editable, so uv compiles none of them: `up` does (again
# when they change); compiling them here too serves whatever else starts first (tests, benchmarks).
PRECOMPILE := $(BIN)/python -c 'from fusionkit_cli.up.bytecode import precompile; precompile()'

.PHONY: setup demo test lint bench fuzz upgrade check-lock seed-fixtures clean

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "FusionKit needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --target $(VENV)/uv uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(MAKE) --no-print-directory check-lock
	$(SYNC)
	$(PRECOMPILE)
	touch $(STAMP)

# A pyproject.toml whose dependencies the lock does not satisfy fails here, loudly, instead of
# installing something unlocked. Offline: it compares the two files and asks no index.
check-lock: | $(UV)
	@$(UV) lock --check --offline --quiet 2>/dev/null || { \
	  echo "error: uv.lock does not match the dependencies in pyproject.toml (one was added, removed or changed)."; \
	  echo "       Run \`make upgrade\` to re-lock, and commit uv.lock with pyproject.toml."; \
	  exit 1; }

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fusionkit up configs/demo.yaml

test: $(STAMP) check-lock
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

fuzz: $(STAMP)
	FUSIONKIT_FUZZ_EXAMPLES=3000 $(BIN)/pytest -q tests/test_fuzz.py

# Re-resolve every dependency to the newest version pyproject.toml allows, write uv.lock, install it.
# The one command after editing pyproject.toml's dependencies (or to take new releases); commit uv.lock.
upgrade: | $(UV)
	$(UV) lock --upgrade
	$(SYNC)
	$(PRECOMPILE)
	touch $(STAMP)

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
