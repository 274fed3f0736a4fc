# One virtual environment in .venv; every pip step is held by constraints.txt, the lock: every
# package `make setup` installs, direct and indirect, at the version it resolved to when the lock
# was made (`make lock` makes it anew from requirements.txt and the holds in constraints.in).
#   make setup [MXNET=mxnet-cu112] [HOROVOD=1]   create .venv, install, build the operator library
#   make demo                                    the main job on the built-in synthetic data
#   make test                                    the test suite (CPU), all of it
#   make quick                                   the suite without slow, multi-process, nvcc tests
#   make bench                                   the benchmarks (prints ratios)
#   make lock                                    resolve the dependencies again into constraints.txt
PYTHON ?= python3
MXNET ?= mxnet
# mxnet-cu112 etc. are pinned to 1.9.1 too unless a version is given.
MXNET_SPEC := $(if $(findstring ==,$(MXNET)),$(MXNET),$(MXNET)==1.9.1)
MXNET_PKG := $(firstword $(subst ==, ,$(MXNET_SPEC)))
HOROVOD ?= 0
HOROVOD_VERSION := 0.28.1
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OPS_SOURCES := $(wildcard tasn_gluon/ops/csrc/*) tasn_gluon/ops/build.py
# One stamp per MXNet choice, so that `make setup MXNET=mxnet-cu112` switches an existing venv.
DEPS_STAMP := $(VENV)/.deps-$(subst =,_,$(MXNET_SPEC))

LOCK_VENV := build/lock-venv

.PHONY: setup demo test quick bench lock clean

SETUP_TARGETS := $(DEPS_STAMP) tasn_gluon/ops/libtasn_ops.so
ifeq ($(HOROVOD),1)
SETUP_TARGETS += $(VENV)/.horovod-done
endif

setup: $(SETUP_TARGETS)

$(DEPS_STAMP): requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt --upgrade pip setuptools wheel
	$(PIP) freeze | grep -i '^mxnet' | cut -d= -f1 | grep -vix '$(MXNET_PKG)' | xargs -r $(PIP) uninstall -y
	$(PIP) install -c constraints.txt "$(MXNET_SPEC)" -r requirements.txt
	$(PY) -c "import mxnet, numpy; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
	rm -f $(VENV)/.deps-*
	touch $@

tasn_gluon/ops/libtasn_ops.so: $(DEPS_STAMP) setup.py $(OPS_SOURCES)
	$(PIP) install -c constraints.txt --no-build-isolation --no-deps -e .
	touch $@

# Horovod for MXNet, built from its source package with Gloo and without MPI (about 90 s).
$(VENV)/.horovod-done: $(DEPS_STAMP)
	HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_CPU_OPERATIONS=gloo \
	$(PIP) install -c constraints.txt --no-build-isolation --no-cache-dir horovod==$(HOROVOD_VERSION)
	$(PY) -c "import horovod.mxnet as hvd; print('horovod', hvd.__version__ if hasattr(hvd, '__version__') else 'ok')"
	touch $@

demo: setup
	$(PY) tools/demo.py --out runs/demo

test: setup
	$(PY) -m pytest -q tests

quick: setup
	$(PY) -m pytest -q tests -m "not slow and not multiprocess and not nvcc"

# Resolves requirements.txt (with MXNet 1.9.1 and Horovod's own dependencies) in a fresh venv,
# held only by constraints.in, and writes what it installed, pinned, as constraints.txt.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(LOCK_VENV)/bin/python -m pip install -q -c constraints.in mxnet==1.9.1 -r requirements.txt \
		cloudpickle psutil
	{ echo '# The lock: every package `make setup` installs (and Horovod'"'"'s dependencies), pinned as'; \
	  echo '# resolved on '"$$(date -u +%Y-%m-%d)"' from requirements.txt held by constraints.in. Made by'; \
	  echo '# `make lock`; do not edit by hand. mxnet==1.9.1 pins the CPU wheel; MXNET=mxnet-cu112'; \
	  echo '# installs that instead.'; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all; echo 'horovod==$(HOROVOD_VERSION)'; } > constraints.txt
	rm -rf $(LOCK_VENV)

bench: setup
	$(PY) bench/sampler.py
	$(PY) bench/data.py
	$(PY) bench/step.py
	@echo "TASN vs baseline on the synthetic set (about 15 min per seed and TASN variant on 2 cores):"
	@echo "  $(PY) bench/synthetic_study.py"

clean:
	rm -rf build tasn_gluon/ops/*.so *.egg-info
