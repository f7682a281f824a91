# ckanext-jupyternotebook: the two commands are `make dev` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PYTEST_ARGS ?=
# the combinations `make test-matrix` runs (all but the default)
MATRIX ?= ckan2.10-hub5 ckan2.10-hub6 ckan2.11-hub5 ckan2.11-hub6 ckan2.12-hub5
# the tested versions .venv is installed with (CKAN 2.12.0, JupyterHub 6.1.1);
# constraints/ holds one file per supported line. The stamp names the file,
# so switching lines reinstalls .venv.
DEFAULT_CONSTRAINTS := constraints/hub-6.txt
VENV_STAMP := $(VENV)/.installed-$(notdir $(basename $(DEFAULT_CONSTRAINTS)))

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: dev dev-up dev-stop test test-fast test-matrix test-loop images bench system-deps services venv cache

## Debian packages the stack and the tests need (installed only when missing)
system-deps:
	@bash dev/system-deps.sh

## PostgreSQL and Redis, started when not running; databases created once
services: system-deps
	@bash dev/services.sh

## The virtual environment: CKAN 2.12, JupyterHub, JupyterLab and this package
venv: $(VENV_STAMP)
	@# the sessions' JupyterLab extension and overrides: an editable install
	@# leaves setup.py's data_files out; copied on every run so they follow edits
	@$(PY) -m jupyterhub_service.lab_files
$(VENV_STAMP): setup.py dev-requirements.txt $(DEFAULT_CONSTRAINTS) | system-deps
	@# Debian's python3: local session servers run as an unprivileged user,
	@# who cannot reach an interpreter under /root (pyenv and the like)
	@test -x $(PY) || $$(test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "setuptools>=69" wheel
	$(PY) -m pip install -q -c $(DEFAULT_CONSTRAINTS) -r dev-requirements.txt -e ".[hub,session]"
	@rm -f $(VENV)/.installed $(VENV)/.installed-*
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
	@# The whole suite builds the images in the background while the CKAN and
	@# bridge tests run (about 9 minutes on a fresh machine); the docker tests,
	@# which come later, wait for it (docker/build-images.sh holds a lock).
	@build=""; \
	if docker info >/dev/null 2>&1; then marker=""; \
	  if [ -z "$(PYTEST_ARGS)" ]; then mkdir -p docker/.build; \
	    bash docker/build-images.sh > docker/.build/background.log 2>&1 & build=$$!; fi; \
	else echo "make test: no Docker engine answers; skipping the tests marked docker"; marker="-m not docker"; fi; \
	$(VENV)/bin/pytest --ckan-ini=test.ini $${marker:+"$$marker"} $(PYTEST_ARGS); rc=$$?; \
	if [ -n "$$build" ]; then wait $$build || echo "make test: the background image build failed (docker/.build/background.log)"; fi; \
	exit $$rc

## Every image the compose stack and the docker tests need
images:
	bash docker/build-images.sh

## Benchmarks against bare JupyterHub (prints a table, writes benchmarks/results/)
bench: venv services
	$(PY) benchmarks/run.py

## The preload cache: `make cache` shows it; `make cache ARGS=clear` empties it
cache: venv
	$(PY) -m jupyterhub_service.cache_command $(ARGS)

## The compatibility matrix's smoke slice on every supported combination but
## the default (dev/test-matrix.sh): the CKAN side (test_views, test_preview,
## test_admin) once per older CKAN line, and a guest launch, a private launch,
## the preview, the admin settings and the docker spawner through a real
## portal and hub per combination, each half in its own environment
## (dev/environments.sh, constraints/); then hub 5 -> 6's database upgrade.
## `make test-matrix MATRIX=ckan2.11-hub5` runs one combination.
test-matrix: services
	@MATRIX="$(MATRIX)" PYTEST_ARGS="$(PYTEST_ARGS)" bash dev/test-matrix.sh

# the concurrency and restart tests, LOOPS times in a row (default 20)
test-loop: venv services
	@LOOPS="$(LOOPS)" LOOP_TESTS="$(LOOP_TESTS)" bash dev/test-loop.sh

## Another combination for `make dev`, `make dev-up` and `make dev-stop`:
## `CKAN_VERSION=2.11 JUPYTERHUB_VERSION=5 make dev` runs CKAN from
## .venvs/ckan2.11 and the hub from .venvs/hub5 (dev/environments.sh), with
## the state of that combination in .dev/ckan2.11-hub5/ and a CKAN database
## per CKAN line (ckan_dev_2_11). Unset, the default environment .venv is used.
ifneq ($(CKAN_VERSION)$(JUPYTERHUB_VERSION),)
CKAN_VERSION := $(or $(CKAN_VERSION),2.12)
JUPYTERHUB_VERSION := $(or $(JUPYTERHUB_VERSION),6)
export CKAN_VENV := $(CURDIR)/.venvs/ckan$(CKAN_VERSION)
export HUB_VENV := $(CURDIR)/.venvs/hub$(JUPYTERHUB_VERSION)
export STACK_DIR := $(CURDIR)/.dev/ckan$(CKAN_VERSION)-hub$(JUPYTERHUB_VERSION)
export CKAN_DB := ckan_dev_$(subst .,_,$(CKAN_VERSION))
export CKAN_DATABASES := $(CKAN_DB)
venv: combination-environments
.PHONY: combination-environments
combination-environments:
	@bash dev/environments.sh ckan$(CKAN_VERSION) hub$(JUPYTERHUB_VERSION)
endif
