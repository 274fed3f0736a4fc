# One virtual environment in .venv; every pip step holds NumPy with constraints.txt.
#   make setup [MXNET=mxnet-cu112] [HOROVOD=1]   create .venv, install, build the operator library
#   make demo                                    the main job on the built-in synthetic data
#   make test                                    the test suite (CPU)
#   make bench                                   the benchmarks (prints ratios)
PYTHON ?= python3
MXNET ?= mxnet==1.9.1
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OPS_SOURCES := $(wildcard tasn_gluon/ops/csrc/*)

.PHONY: setup demo test bench clean

setup: $(VENV)/.deps-done tasn_gluon/ops/libtasn_ops.so

$(VENV)/.deps-done: requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -c constraints.txt "$(MXNET)" -r requirements.txt
	$(PY) -c "import mxnet, numpy; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
	touch $@

tasn_gluon/ops/libtasn_ops.so: $(VENV)/.deps-done setup.py $(OPS_SOURCES)
	$(PIP) install -c constraints.txt --no-build-isolation --no-deps -e .
	touch $@

demo: setup
	$(PY) tools/demo.py --out runs/demo

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/sampler.py

clean:
	rm -rf build tasn_gluon/ops/*.so *.egg-info
