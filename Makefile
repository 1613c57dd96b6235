# iam-service — `make run` serves the whole stack; `make test` runs every check. `make help` lists targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

# The locks (requirements.txt: runtime, what the image installs; requirements-dev.txt: runtime + tests
# and tools) pin every package with its hashes; `make lock` regenerates them from the .in files.
LOCK := $(VENV)/bin/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet --custom-compile-command 'make lock'

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 needed (pgserver wheels)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(PY) -m pip check >&2
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create the virtualenv and install the dev lock (runtime + tests and tools)

.PHONY: lock
lock: venv ## Regenerate the hashed locks requirements.txt and requirements-dev.txt from requirements*.in
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in -o requirements-dev.txt

.PHONY: system-deps
system-deps: ## Install Debian's chromium and prometheus (promtool) for the console and alert tests, where root with apt
	@bash scripts/system-deps.sh

.PHONY: run
BUS ?= nats
run: venv ## Run the whole service (web, worker, beat, PostgreSQL, NATS, broker) on http://127.0.0.1:8000; BUS=kafka: on an embedded Kafka-compatible broker
	IAM_ENV=development IAM_DEV_EVENT_BUS=$(BUS) $(PY) manage.py devstack

.PHONY: manage
manage: venv ## A management command against the development stack: make manage ARGS="create_api_key --help"
	@IAM_ENV=development $(PY) manage.py $(ARGS)

.PHONY: admin-password
admin-password: venv ## Set a new password for the development console user admin
	IAM_ENV=development $(PY) manage.py changepassword admin

.PHONY: stop
stop: venv ## Stop the embedded PostgreSQL and NATS that `make run` left running
	IAM_ENV=development $(PY) -c 'from devtools.embedded import stop_embedded_services; stop_embedded_services()'

.PHONY: test
test: venv system-deps lint ## Run lint, the migrations check and the whole test suite
	IAM_ENV=development IAM_EMBEDDED=off $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff lint and format check; mypy (config in pyproject.toml; strict on core, eventbus, services, selectors)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	IAM_ENV=development IAM_EMBEDDED=off $(VENV)/bin/mypy

.PHONY: format
format: venv ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: bench bench-relay bench-pip bench-pip-replica bench-import bench-search bench-scim bench-groups
bench: bench-relay bench-import bench-pip bench-search bench-scim bench-groups ## Run every benchmark (figures in docs/performance.md)

bench-relay: venv ## Relay throughput and commit-to-JetStream latency vs raw nats-py
	$(PY) bench/relay.py

bench-pip: venv ## PIP lookups under gunicorn + wrk vs a minimal DRF view (installs Debian's wrk, redis-server where root with apt)
	@bash scripts/system-deps.sh --bench
	$(PY) bench/pip.py

bench-pip-replica: venv ## PIP lookups on a hot-standby replica: no token, a replayed token, the primary; quiet and under 200 writes/s
	@bash scripts/system-deps.sh --bench
	$(PY) bench/pip.py --replica --users 20000 --skip-bundle

bench-import: venv ## import_users of 100k users vs PostgreSQL COPY
	$(PY) bench/import.py

bench-search: venv ## Attribute search first pages (8 clients) vs the PIP single lookup; SEARCH_ARGS="--users 200000 --others 20000"
	$(PY) bench/search.py $(SEARCH_ARGS)

bench-groups: venv ## Effective-attribute lookups (20 groups vs none), bulk membership add, the bundle with groups; GROUPS_ARGS="--lookup-only"
	$(PY) bench/groups.py $(GROUPS_ARGS)

bench-scim: venv ## 10,000 SCIM creates vs REST creates; userName eq on 100k users vs a PIP lookup; SCIM_ARGS="--creates 1000"
	$(PY) bench/scim.py $(SCIM_ARGS)

.PHONY: clean
clean: ## Remove the virtualenv and the embedded data (.data/)
	rm -rf $(VENV) .data
