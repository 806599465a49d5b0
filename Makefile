# Two commands do everything on a fresh machine:
#   make run    install the runtime (virtual environment in .venv) and start the app
#   make test   install the development tools (Chromium for the browser tests included), then run ruff, build the
#               documentation site strictly and run the whole test suite (tutorial notebooks and wheel test included)
VENV ?= .venv
PY := $(VENV)/bin/python
# The runtime (the package, editable, with the app and CLIP extras: requirements.txt lists the same) and the
# development install (the `dev` extra: test tools, test oracles, the documentation site) have their own stamps.
STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
# Debian's package first; set it empty (make test APT=) to skip apt-get.
APT ?= apt-get

.PHONY: run test lint docs docs-serve bench install install-dev chromium explain-sample

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -e ".[app,clip]"
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -e ".[dev]"
	touch $(DEV_STAMP) $(STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

# MALLOC_ARENA_MAX=2: glibc keeps what a model pass freed in one arena per thread (Streamlit runs each rerun on
# a new thread); two arenas keep a crowd's server within its memory budget (docs/deployment.md).
run: $(STAMP)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/streamlit run app.py

# Chromium for tests/test_browser*.py: nothing to do when one starts (VIT_EXPLAIN_CHROMIUM, /usr/bin/chromium
# or Playwright's); else Debian's chromium with apt-get (as root, or with password-less sudo), else Playwright's
# own installer; else stop with the command to run.
chromium: $(DEV_STAMP)
	@$(PY) tests/browser_support.py 2>/dev/null && exit 0; \
	if [ -n "$(APT)" ] && command -v $(APT) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else SUDO=no; fi; \
	  if [ "$$SUDO" != no ]; then \
	    echo "Installing Debian's chromium for the browser tests ($(APT) install chromium)"; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive $(APT) update -qq; \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq chromium >/dev/null \
	      && $(PY) tests/browser_support.py && exit 0; \
	  fi; \
	fi; \
	echo "Installing Playwright's Chromium for the browser tests (python -m playwright install chromium)"; \
	$(PY) -m playwright install chromium && $(PY) tests/browser_support.py && exit 0; \
	echo "make test needs a Chromium for the browser tests and could not install one. Run one of:"; \
	echo "  sudo apt-get install chromium"; \
	echo "  $(PY) -m playwright install --with-deps chromium"; \
	echo "then make test again (or skip them: $(PY) -m pytest -m 'not browser')."; \
	exit 1

# pytest exits 5 when it collected no tests: any non-zero status fails this target.
# The tutorials (docs/tutorials/*.ipynb) are executed by tests/test_tutorials.py, the wheel by tests/test_wheel.py.
test: $(DEV_STAMP) chromium
	$(VENV)/bin/ruff check .
	$(PY) -m mkdocs build --strict --site-dir site
	$(PY) -m pytest -q

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

# The documentation site (site/), and a live preview at http://127.0.0.1:8000
docs: $(DEV_STAMP)
	$(PY) -m mkdocs build --strict --site-dir site

docs-serve: $(DEV_STAMP)
	$(PY) -m mkdocs serve

bench: $(DEV_STAMP)
	$(PY) benchmarks/bench_methods.py

# The command line on a bundled sample photo (no app needed).
explain-sample: $(STAMP)
	$(VENV)/bin/vit-explain explain --model deit_tiny_patch16_224 --weights $${VIT_EXPLAIN_WEIGHTS:-../shared/weights/deit_tiny_patch16_224} \
		--method attention_rollout --image vit_explain_studio/assets/samples/chelsea.png --out heatmap.png
