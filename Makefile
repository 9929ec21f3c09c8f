# The two commands a newcomer needs: `make run` and `make test`. Everything else is for the team.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest pytest-shared pytest-alone pytest-alone-crashes pytest-alone-timed bench bench-smoke messages clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

## run: install if needed, then start the whole embedded stack with demo data
run: $(INSTALLED)
	$(BIN)/roundtable dev --demo

## test: lint, type-check, the full suite (SQLite and PostgreSQL, real Temporal and SMTP), bench smoke
# Lint, the type check, the bench smoke and most of the suite run side by side (each target's output is
# shown whole when it ends); the tests that bound time or a crash's repeats run alone after them.
test: $(INSTALLED)
	@$(MAKE) --no-print-directory -j4 --output-sync=target lint typecheck pytest-shared bench-smoke
	@$(MAKE) --no-print-directory pytest-alone

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(INSTALLED)
	$(BIN)/mypy

# Three processes for most of the suite (its tests wait on servers and browsers as much as they
# compute; four were slower than three on two cores); the tests that bound time or a crash's repeats run
# after it, away from that load. Of those, the crashes of workers and Temporal (which mostly wait: a slow
# mail sink, a stopped server, a reconciler's period) run beside the rest, each in one process.
pytest: pytest-shared pytest-alone

pytest-shared: $(INSTALLED)
	$(BIN)/pytest -m "not serial"

CRASHES := tests/workflows/test_faults.py
pytest-alone: $(INSTALLED)
	@$(MAKE) --no-print-directory -j2 --output-sync=target pytest-alone-crashes pytest-alone-timed

pytest-alone-crashes: $(INSTALLED)
	$(BIN)/pytest -m serial -n 0 $(CRASHES)

pytest-alone-timed: $(INSTALLED)
	$(BIN)/pytest -m serial -n 0 --ignore=$(CRASHES)

## bench: every benchmark at full size with its baselines, then one summary table (under 20 minutes)
bench: $(INSTALLED)
	$(BIN)/python -m bench.run_all

## bench-smoke: the same scripts at tiny sizes (under a minute), so they cannot rot
bench-smoke: $(INSTALLED)
	$(BIN)/python -m bench.run_all --smoke

## messages: extract the pages' texts (babel.cfg) into the catalogs, then list what has no Albanian yet
LOCALE := services/web/locale
messages: $(INSTALLED)
	$(BIN)/pybabel extract -F babel.cfg --add-location=file --no-wrap --project=Roundtable --version=0.1.0 --header-comment="# Made by make messages from babel.cfg: do not edit." -o $(LOCALE)/messages.pot .
	$(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -D messages --ignore-obsolete --no-wrap
	$(BIN)/python -m services.web.locale.check || true

clean:
	rm -rf $(VENV) .roundtable .pytest_cache .mypy_cache .ruff_cache
