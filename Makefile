# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv/ and installs the package into it the first time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kerasrecipes finetune

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

benchmark: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build *.egg-info
