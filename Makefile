# Two commands do everything on a fresh machine:
#   make run    install (virtual environment in .venv) and start the app
#   make test   install (Chromium for the browser tests included) and run ruff and the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian's package first; set it empty (make test APT=) to skip apt-get.
APT ?= apt-get

.PHONY: run test lint bench install chromium explain-sample

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# MALLOC_ARENA_MAX=2: glibc keeps what a model pass freed in one arena per thread (Streamlit runs each rerun on
# a new thread); two arenas keep a crowd's server within its memory budget (README, Limits).
run: $(STAMP)
	MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/streamlit run app.py

# Chromium for tests/test_browser*.py: nothing to do when one starts (VIT_EXPLAIN_CHROMIUM, /usr/bin/chromium
# or Playwright's); else Debian's chromium with apt-get (as root, or with password-less sudo), else Playwright's
# own installer; else stop with the command to run.
chromium: $(STAMP)
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
test: $(STAMP) chromium
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_methods.py

# The command line on a bundled sample photo (no app needed).
explain-sample: $(STAMP)
	$(PY) -m explainers explain --model deit_tiny_patch16_224 --weights $${VIT_EXPLAIN_WEIGHTS:-../shared/weights/deit_tiny_patch16_224} \
		--method attention_rollout --image vit_explain_studio/assets/samples/chelsea.png --out heatmap.png
