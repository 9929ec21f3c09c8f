# The two commands a newcomer needs: `make run` and `make test`. Everything else is for the team.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-smoke clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

## run: install if needed, then start the whole embedded stack with demo data
run: $(INSTALLED)
	$(BIN)/roundtable dev --demo

## test: lint, type-check, the full suite (SQLite and PostgreSQL, real Temporal and SMTP), bench smoke
test: lint typecheck pytest bench-smoke

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(INSTALLED)
	$(BIN)/mypy

# Two processes for most of the suite; the tests that bound time or a crash's repeats run alone after it,
# so that the other process's load cannot make them fail.
pytest: $(INSTALLED)
	$(BIN)/pytest -m "not serial"
	$(BIN)/pytest -m serial -n 0

## bench: every benchmark at full size with its baselines, then one summary table (under 20 minutes)
bench: $(INSTALLED)
	$(BIN)/python -m bench.run_all

## bench-smoke: the same scripts at tiny sizes (under a minute), so they cannot rot
bench-smoke: $(INSTALLED)
	$(BIN)/python -m bench.run_all --smoke

clean:
	rm -rf $(VENV) .roundtable .pytest_cache .mypy_cache .ruff_cache
