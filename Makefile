# The helpdesk. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The test suite talks to real services on loopback (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/helpdesk
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
TEST_WORKERS ?= 2

$(VENV)/.installed: pyproject.toml requirements.lock
	@mkdir -p var
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies into $(VENV) (log: var/install.log) ..."
	@{ $(PY) -m pip install --disable-pip-version-check --upgrade "pip>=24" && \
	   $(PY) -m pip install --disable-pip-version-check -c requirements.lock -e ".[dev]"; \
	 } > var/install.log 2>&1 || { tail -n 40 var/install.log; exit 1; }
	@touch $@

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: install
install: $(VENV)/.installed ## Create the virtualenv and install pinned dependencies

.PHONY: run
run: install ## Run the product on the embedded default (SQLite, in-process tasks) with demo data
	@mkdir -p var/static var/media
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py createdemo --if-empty
	@echo ""
	@echo "  Helpdesk running at http://$(HOST):$(PORT)/   (API docs: http://$(HOST):$(PORT)/api/docs/)"
	@echo ""
	@exec $(VENV)/bin/uvicorn helpdesk.asgi:application --host $(HOST) --port $(PORT) --no-access-log --lifespan off --ws-per-message-deflate false

.PHONY: test
test: install ## Run the whole test suite against PostgreSQL and Redis on loopback
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  SECRET_KEY=$${SECRET_KEY:-test-only-secret} CELERY_TASK_ALWAYS_EAGER=1 DB_POOL_MAX=0 \
	  $(VENV)/bin/pytest -n $(TEST_WORKERS) --create-db $(ARGS)

.PHONY: lint
lint: install ## ruff check
	@$(VENV)/bin/ruff check .

.PHONY: format
format: install ## ruff format and fix imports
	@$(VENV)/bin/ruff check --fix --select I .
	@$(VENV)/bin/ruff format .

.PHONY: worker
worker: install ## A Celery worker (production: set DATABASE_URL, REDIS_URL, SECRET_KEY)
	@exec $(VENV)/bin/celery -A helpdesk worker --loglevel=INFO

.PHONY: beat
beat: install ## Celery beat, the periodic jobs (run exactly one)
	@exec $(VENV)/bin/celery -A helpdesk beat --loglevel=INFO

.PHONY: bench
bench: install ## Run the benchmarks (PostgreSQL and Redis on loopback); results go to bench/RESULTS.md
	@$(PY) bench/queue.py

.PHONY: lock
lock: ## Re-pin requirements.lock from a clean virtualenv
	@rm -rf /tmp/helpdesk-lock && $(PYTHON) -m venv /tmp/helpdesk-lock
	@/tmp/helpdesk-lock/bin/pip install --quiet -e ".[dev]"
	@{ echo "# Exact versions for reproducible installs (pip install -c requirements.lock -e '.[dev]')."; \
	   echo "# Regenerate with: make lock"; /tmp/helpdesk-lock/bin/pip freeze --exclude-editable; } > requirements.lock
