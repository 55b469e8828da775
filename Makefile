# The commands the README shows. `make run` and `make test` set everything up themselves.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# `make test` runs pytest-xdist workers, each with its own servers on its own free ports; a test
# module stays on one worker (its module fixtures are built once). Most of the suite waits on
# servers and flow runs rather than computing, so there are more workers than the 2 cores here.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 4
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)

# Nothing but loopback: Prefect's and MLflow's usage telemetry stay off.
export DO_NOT_TRACK ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
# A one-off run on a busy machine: Prefect's temporary server gets longer than its 20 s to start.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.DEFAULT_GOAL := help
.PHONY: help .venv lock run test e2e bench lint format clean system-packages

help:  ## List the targets
	@grep -E '^[a-z0-9.]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.venv: $(STAMP)  ## Create the virtualenv and install milkprice with its dev tools

# Re-installs only when pyproject.toml or the lock is newer than the stamp of the last install.
# constraints.txt pins the versions the suite was last run with: installs are reproducible and
# pip never has to backtrack through s3fs/aiobotocore/botocore's narrow pins on a new machine.
# Refresh it after changing dependencies: make lock.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,cluster]'
	@touch $(STAMP)

lock:  ## Re-resolve dependencies from pyproject.toml and rewrite constraints.txt
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet -U pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev,cluster]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^milkprice' > constraints.txt
	rm -rf .venv-lock

run: .venv  ## Demo lake if the lake is empty, then train on its newest complete month
	$(BIN)/milkprice data demo --if-empty
	$(BIN)/milkprice data ls
	$(BIN)/python orchestration/flows/main_flow.py --latest

system-packages:  ## Install the Debian packages the tests drive (chromium, postgresql) when missing
	@scripts/system-packages.sh chromium postgresql

# pytest exits with 5 when it collected no tests: that must fail the build, not pass quietly.
test: .venv system-packages  ## Run the test suite
	@status=0; $(BIN)/pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit code 5); failing on purpose" >&2; \
		exit 1; \
	fi; \
	exit $$status

e2e: .venv system-packages  ## Run only the slow end-to-end tests (real servers, browser, cluster); `make test` runs them too
	$(BIN)/pytest -m e2e $(PYTEST_PARALLEL) $(PYTEST_ARGS)

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

# Background stack on 127.0.0.1 under supervisord: config, socket, logs under STATE_DIR (default
# .state/). `make up`: Prefect server, MLflow UI, `milkprice serve` and the API (explorer at /)
# on PREFECT_PORT (4200), MLFLOW_PORT (5000) and API_PORT (8000), and the demo publisher on PUBLISHER_PORT (8010). `make up STACK=cluster`: PostgreSQL, S3 (moto), Prefect and MLflow servers,
# a Dask cluster and two Prefect workers on a work pool, on free ports (see STATE_DIR/stack.json).
STACK ?= local
.PHONY: up down status
up: .venv  ## Start the stack in the background (STACK=local, the default, or STACK=cluster)
	@case "$(STACK)" in local|cluster) ;; *) echo "make up: STACK must be local or cluster, not '$(STACK)'" >&2; exit 2;; esac
	@if [ "$(STACK)" = cluster ]; then scripts/system-packages.sh postgresql; fi
	$(BIN)/python -m stack up $(if $(filter cluster,$(STACK)),--cluster)

down:  ## Stop exactly what `make up` started (supervisord shutdown, nothing left behind)
	$(BIN)/python -m stack down

status:  ## Show the stack's programs (supervisorctl status) and addresses
	$(BIN)/python -m stack status

clean:  ## Remove caches and build output (keeps .venv and the data/ lake)
	rm -rf build dist .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
