# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Each creates .venv/ and installs the package into it the first time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The runtime alone (what `make demo` needs), then the test stack on top (`make test`).
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
# Python writes each module's bytecode the first time a run imports it, and the next process reads
# it: importing TensorFlow, Keras and the package takes 25 s from source and 11 s from bytecode on
# 2 cores, and the suite starts dozens of processes. Some machines export PYTHONDONTWRITEBYTECODE=1
# (this workplace's do), which with --no-compile below left every process compiling afresh.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-slow benchmark clean

# --no-compile: pip would byte-compile all of site-packages (16,000 files, 100 s on 2 cores);
# Python compiles the modules a run imports as it first imports them.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	# The dev extra holds the backends extra, so the PyTorch tested is the one users of
	# `pip install ".[backends]"` get (pyproject.toml bounds it), with its torchvision for timm.
	$(PY) -m pip install --quiet --no-compile -e ".[dev]"
	touch $(STAMP)

demo: $(RUNTIME)
	$(VENV)/bin/kerasrecipes finetune

# The main run on TensorFlow, then tests/test_backends.py on JAX and on PyTorch.
test: $(STAMP)
	$(PY) -m pytest -q --durations=15
	# XLA at optimization level 0: the JAX leg compiles each model once and runs it on tiny inputs.
	KERAS_BACKEND=jax XLA_FLAGS=--xla_backend_optimization_level=0 $(PY) -m pytest -q tests/test_backends.py
	KERAS_BACKEND=torch $(PY) -m pytest -q tests/test_backends.py

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

benchmark: $(STAMP)
	$(PY) benchmarks/train_step.py

clean:
	rm -rf $(VENV) build *.egg-info
