# Two commands on a fresh machine: `make demo` (the main job, local target) and `make test` (the whole suite).
# Both create .venv and install everything first: torch 2.13.0 (CPU build where one is offered), then the rest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test lab render clean browser-deps font-deps nginx-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e '.[notebooks,test]'
	touch $@

# Runs every notebook on the local target with papermill (TARGET="local", QUICK=True); executed notebooks and HTML
# land in build/notebooks, build/html. It fails on a traceback, stderr output or an nbval marker in any notebook.
demo: setup font-deps
	$(PY) -m tke_playbook.cli.demo --out build

# The suite in parallel (pytest-xdist): TEST_WORKERS processes, more than the cores because most tests wait on a
# server, a kernel or a browser; tests/conftest.py says how tests are grouped onto workers. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 3
test: setup browser-deps font-deps nginx-deps
	$(PY) -m pytest -n $(TEST_WORKERS)

# The browser test drives Debian's chromium; install it when missing and we may (root with apt-get),
# otherwise say how - the test skips itself without it.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium not found: install it (sudo apt-get install chromium) to run the browser test"; fi; }

# The auth-proxy test runs the generated nginx.conf in Debian's nginx (nginx-light, ~1 MB); it skips without it.
nginx-deps:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) \
	      || echo "could not install nginx-light: the auth-proxy test will skip"; \
	  else echo "nginx not found: install it (sudo apt-get install nginx-light) to run the auth-proxy test"; fi; }

# Chinese labels in the plots need a CJK font (the plots fall back to sentence ids without one).
font-deps:
	@fc-list 2>/dev/null | grep -qiE 'WenQuanYi|Noto Sans CJK' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei) \
	      || echo "could not install fonts-wqy-microhei: plots will label Chinese sentences by id"; \
	  else echo "no CJK font: install fonts-wqy-microhei for Chinese plot labels (plots use ids meanwhile)"; fi; }

lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

render: setup
	$(VENV)/bin/tke-playbook render --profile seed

clean:
	rm -rf build .pytest_cache
