# The commands the README shows. `make run` and `make test` set everything up themselves.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help .venv run test bench lint format clean

help:  ## List the targets
	@grep -E '^[a-z.]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.venv: $(STAMP)  ## Create the virtualenv and install milkprice with its dev tools

# Re-installs only when pyproject.toml is newer than the stamp of the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: .venv  ## Demo lake (if the local lake is empty), then list the lake
	$(BIN)/milkprice data demo --if-empty
# Training (the Prefect flow) goes here, between filling the lake and listing it.
	$(BIN)/milkprice data ls

# pytest exits with 5 when it collected no tests: that must fail the build, not pass quietly.
test: .venv  ## Run the test suite
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit code 5); failing on purpose" >&2; \
		exit 1; \
	fi; \
	exit $$status

bench: .venv  ## Run every benchmarks/bench_*.py script
	@shopt -s nullglob; scripts=(benchmarks/bench_*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "make bench: no benchmarks/bench_*.py" >&2; exit 1; fi; \
	for script in "$${scripts[@]}"; do \
		echo "== $$script"; $(BIN)/python "$$script" || exit $$?; \
	done

lint: .venv  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: .venv  ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## Remove caches and build output (keeps .venv and the data/ lake)
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
