# Two commands on a fresh machine: `make demo` (the main job, local target) and `make test` (the whole suite).
# Both create .venv and install everything first: torch 2.13.0 (CPU build where one is offered), then the rest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lab render clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e '.[test]'
	touch $@

demo: setup
	$(PY) -m tke_playbook.demo

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks

render: setup
	$(VENV)/bin/tke-playbook render --profile seed

clean:
	rm -rf build .pytest_cache
