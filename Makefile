# Switchboard. `make run` starts everything, `make test` runs the suite; both set the machine up first
# (scripts/bootstrap.sh: venv, .env, Postgres, Redis, var/runtime.env). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

VENV := .venv
ARGS ?=
NAME ?=

# bootstrap.sh writes the DATABASE_URL and REDIS_URL it found or started to var/runtime.env; every command
# after bootstrap gets them in its environment, ahead of whatever the caller's environment said.
WITH_RUNTIME_ENV := set -a && . var/runtime.env && set +a

.PHONY: run test bench setup stop

setup: ## venv, .env, Postgres, Redis, migrations, static files, tenant pool, first platform admin
	@scripts/bootstrap.sh

run: setup ## set up, then start web, worker, whatsapp and beat (Procfile) with honcho
	@$(WITH_RUNTIME_ENV); \
	port=$$(scripts/env-get PORT 8000); \
	echo "Switchboard: $$(scripts/env-get SITE_URL "http://localhost:$$port")  (Ctrl-C stops every process)"; \
	exec $(VENV)/bin/honcho start -f Procfile -e var/runtime.env -p "$$port"

test: ## set up venv and services, then run pytest (make test ARGS="-k foo"); Redis database TEST_REDIS_DB (15)
	@scripts/bootstrap.sh --test
	@$(WITH_RUNTIME_ENV); \
	export TEST_REDIS_DB="$${TEST_REDIS_DB:-15}"; \
	export REDIS_URL="$$($(VENV)/bin/python scripts/services.py redis-db "$$REDIS_URL" "$$TEST_REDIS_DB")"; \
	exec $(VENV)/bin/pytest $(ARGS)

bench: ## set up venv and services, then run every bench/*.py (not _*.py), or only bench/$(NAME).py
	@scripts/bootstrap.sh --services
	@$(WITH_RUNTIME_ENV); \
	export PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"; \
	if [ -n "$(NAME)" ]; then scripts=(bench/$(NAME).py); \
	else shopt -s nullglob; scripts=(bench/[!_]*.py); shopt -u nullglob; fi; \
	[ $${#scripts[@]} -gt 0 ] || { echo "bench: no bench/*.py scripts yet"; exit 0; }; \
	failed=0; \
	for script in "$${scripts[@]}"; do \
		[ -f "$$script" ] || { echo "bench: no such script: $$script" >&2; exit 1; }; \
		echo "== $$script"; \
		$(VENV)/bin/python "$$script" || { echo "bench: $$script failed" >&2; failed=1; }; \
	done; \
	exit $$failed

stop: ## stop the private Postgres/Redis that bootstrap may have started under var/
	@scripts/bootstrap.sh --stop
