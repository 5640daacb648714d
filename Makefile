# The few commands a person needs. `make run` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH, else a private copy installed with pip on first use.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
VENV_STAMP := .venv/.synced

.PHONY: run test drills lint format bench bench-backup bench-report bench-admin bench-beat bench-broker clean

run: $(VENV_STAMP)
	.venv/bin/python bin/run.py

test: $(VENV_STAMP)
	.venv/bin/python -m devtools.system_packages test
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# The fault drills alone (they also run in `make test`), with their count table at the end.
drills: $(VENV_STAMP)
	.venv/bin/python -m devtools.system_packages test
	.venv/bin/python -m pytest -m drill $(PYTEST_ARGS)

lint: $(VENV_STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	DEBUG=true ENV_FILE=/dev/null .venv/bin/mypy .

bench: $(VENV_STAMP)
	.venv/bin/python bench/run_overhead.py $(BENCH_ARGS)

bench-backup: $(VENV_STAMP)
	.venv/bin/python bench/backup.py $(BENCH_ARGS)

bench-report: $(VENV_STAMP)
	.venv/bin/python bench/report.py $(BENCH_ARGS)

bench-admin: $(VENV_STAMP)
	.venv/bin/python bench/admin.py $(BENCH_ARGS)

bench-beat: $(VENV_STAMP)
	.venv/bin/python bench/beat.py $(BENCH_ARGS)

bench-broker: $(VENV_STAMP)
	.venv/bin/python bench/broker.py $(BENCH_ARGS)

format: $(VENV_STAMP)
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

$(VENV_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked
	@touch $@

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv

clean:
	rm -rf .venv .tools var/static var/test-*
