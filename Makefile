# Front door: `make test`, `make test-all` and `make book` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= default
# Extra flags for `make lab`, e.g. LAB_ARGS='--port 8899 --no-browser'.
LAB_ARGS ?=
PYTEST_ARGS ?=
# The quick tier: every test without a mark of pyproject.toml's [tool.pytest.ini_options] markers.
FAST   := not slow and not book and not subprocess and not bench and not rehearsal

.PHONY: test test-all rehearse install bench book lab clean-venv

# Reinstall only when the dependency list changes: a second `make test` is quick.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# After every change, and to check an install: every module, quick tests only (minutes).
test: $(STAMP)
	$(PY) -m pytest -m "$(FAST)" $(PYTEST_ARGS)

# Everything (what CI runs): also the smoke book, subprocess/signal/torchrun tests, benchmarks and
# the koniq rehearsal. PYTEST_ARGS='-m "not rehearsal"' leaves the rehearsal out.
test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The koniq (GPU) edition rehearsed on the CPU against a stand-in KonIQ-10k: every chapter.
rehearse: $(STAMP)
	$(PY) -m pytest tests/test_koniq_rehearsal.py $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m iqalib.cli bench

# Execute every chapter with params/$(PROFILE).yaml, then build book/_build/html/index.html.
book: $(STAMP)
	$(PY) -m iqalib.cli book --profile $(PROFILE)

# JupyterLab from the project's environment; jupytext's server extension (enabled by its
# package) opens notebooks/NN_*.py as notebooks and saves both files of each pair.
# As root (many containers) Jupyter refuses to start without --allow-root: added when the user id is 0.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean-venv:
	rm -rf $(VENV)
