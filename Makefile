# ckanext-jupyternotebook: the two commands are `make dev` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: dev dev-up dev-stop test test-fast images bench system-deps services venv cache

## Debian packages the stack and the tests need (installed only when missing)
system-deps:
	@bash dev/system-deps.sh

## PostgreSQL and Redis, started when not running; databases created once
services: system-deps
	@bash dev/services.sh

## The virtual environment: CKAN 2.12, JupyterHub, JupyterLab and this package
venv: $(VENV)/.installed
$(VENV)/.installed: setup.py dev-requirements.txt | system-deps
	@# Debian's python3: local session servers run as an unprivileged user,
	@# who cannot reach an interpreter under /root (pyenv and the like)
	@test -x $(PY) || $$(test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "setuptools>=69" wheel
	$(PY) -m pip install -q -r dev-requirements.txt -e ".[hub,session]"
	@touch $@

## Run the whole stack in the foreground (Ctrl-C stops it)
dev: venv services
	$(PY) dev/stack.py run

## Start the stack in the background; returns once CKAN, hub and bridge answer
dev-up: venv services
	$(PY) dev/stack.py up

## Stop everything the stack started
dev-stop:
	@if [ -x $(PY) ]; then $(PY) dev/stack.py stop; fi

## The whole test suite; the tests marked `docker` run when a Docker engine answers
test: venv services
	@if docker info >/dev/null 2>&1; then marker=""; \
	else echo "make test: no Docker engine answers; skipping the tests marked docker"; marker="-m not docker"; fi; \
	$(VENV)/bin/pytest --ckan-ini=test.ini $${marker:+"$$marker"} $(PYTEST_ARGS)

## Every image the compose stack and the docker tests need
images:
	bash docker/build-images.sh

## Benchmarks against bare JupyterHub (prints a table, writes benchmarks/results/)
bench: venv services
	$(PY) benchmarks/run.py

## The preload cache: `make cache` shows it; `make cache ARGS=clear` empties it
cache: venv
	$(PY) -m jupyterhub_service.cache $(ARGS)
