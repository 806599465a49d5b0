# Two commands do everything on a fresh machine:
#   make run    install (virtual environment in .venv) and start the app
#   make test   install and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install explain-sample

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run app.py

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_methods.py

# The command line on a bundled sample photo (no app needed).
explain-sample: $(STAMP)
	$(PY) -m explainers explain --model deit_tiny_patch16_224 --weights $${VIT_EXPLAIN_WEIGHTS:-../shared/weights/deit_tiny_patch16_224} \
		--method attention_rollout --image assets/samples/chelsea.png --out heatmap.png
