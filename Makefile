# `make` lists the targets. Everything runs from the project venv in .venv.
PYTHON ?= python3
PORT ?= 8888
VENV := .venv
PY := $(VENV)/bin/python
START := lessons/00_start_here.ipynb
SANITIZE := tests/nbval_sanitize.cfg
NBVAL := --nbval-current-env --nbval-sanitize-with $(SANITIZE)
# JupyterLab refuses to start as root (containers, CI) unless told it is on purpose.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.DEFAULT_GOAL := help
.PHONY: help venv lab check test bench assign execute clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-7s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## create .venv and install labkit with its test and bench extras

# Reinstalls only when pyproject.toml is newer than the stamp.
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "error: $(PYTHON) is $$($(PYTHON) --version 2>&1); the course needs Python >= 3.10 (make PYTHON=python3.11 ...)"; exit 1; }
	@if ! $(PY) -m pip --version >/dev/null 2>&1; then \
		echo "Creating $(VENV) with $$($(PYTHON) --version)"; rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
			echo "error: '$(PYTHON) -m venv' failed. If it says ensurepip is not available, install the"; \
			echo "  venv module: on Debian/Ubuntu 'apt-get install python3-venv', then run make again."; exit 1; }; \
	fi
	@echo "Installing labkit and its dependencies into $(VENV) (a few minutes the first time)"
	$(PY) -m pip install --quiet --upgrade pip
	@# setuptools' boxed editable-install warning is for package authors, not for learners.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[test,bench]'
	@# No "receive Jupyter news?" toast for learners: disable announcements in this venv only
	@# (postBuild does the same on Binder; the README gives conda users the same line).
	@$(VENV)/bin/jupyter labextension disable --level=sys_prefix "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1
	@touch $@

# The venv's bin/ first on PATH: a terminal opened in JupyterLab then runs the README's `labkit check ...`.
# Its shell is named, so JupyterLab does not start a login shell (it does when its output is not a
# terminal: piped, logged, under a service), whose profile would put the old PATH back.
lab: venv ## start JupyterLab on the first lesson (PORT=8888); open the URL it prints
	@echo "Starting JupyterLab on port $(PORT); open the http://127.0.0.1 URL printed below (Ctrl-C twice stops it)."
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) $(ALLOW_ROOT) \
		--ServerApp.terminado_settings="{\"shell_command\": [\"$${SHELL:-/bin/sh}\"]}" \
		$(if $(wildcard $(START)),--LabApp.default_url=/lab/tree/$(START))

check: venv ## check your work in one lesson as the grader will (LESSON=03, or NOTEBOOK=path/to/file.ipynb)
	@$(if $(NOTEBOOK),,$(if $(LESSON),,echo "usage: make check LESSON=03 (or NOTEBOOK=lessons/03_circuit_breaker.ipynb)"; exit 2;))
	$(VENV)/bin/labkit check $(or $(NOTEBOOK),$(wildcard lessons/$(LESSON)_*.ipynb))

# Three pytest runs, because nbval checks outputs all-or-nothing per run. Every layer runs,
# the last line says which failed, and so does the exit code. Empty notebook folders are skipped.
test: venv ## run every test layer: tests/, then nbval over lessons/ (lax) and solutions/ (outputs)
	@failed=; \
	$(PY) -m pytest tests || failed="$$failed tests/"; \
	$(if $(wildcard lessons/*.ipynb),$(PY) -m pytest --nbval-lax $(NBVAL) lessons || failed="$$failed lessons/";,echo "lessons/ has no notebooks: nbval skipped";) \
	$(if $(wildcard solutions/*.ipynb),$(PY) -m pytest --nbval $(NBVAL) solutions || failed="$$failed solutions/";,echo "solutions/ has no notebooks: nbval skipped";) \
	if [ -n "$$failed" ]; then echo "make test: FAILED in$$failed"; exit 1; fi; \
	echo "make test: every layer passed"

bench: venv ## run the benchmarks (timing lives here, not in tests)
	$(PY) -m benchmarks

assign: venv ## regenerate lessons/ from solutions/ (a lesson you edited is kept: labkit assign --force)
	$(VENV)/bin/labkit assign solutions lessons

execute: venv ## re-execute solutions/ in place so their stored outputs are current, then regenerate lessons/
	$(VENV)/bin/labkit execute solutions/*.ipynb
	$(VENV)/bin/labkit assign solutions lessons

clean: ## remove caches and build files (keeps .venv: rm -rf .venv to rebuild it)
	rm -rf build dist *.egg-info .pytest_cache .hypothesis benchmarks/.cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
