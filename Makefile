# segedu: two commands for a fresh machine.
#   make book   set up .venv, make the default data, execute every chapter, build the HTML book
#   make test   set up .venv, run the whole test suite
# Everything installs into .venv from requirements.lock (exact versions); nothing else is needed.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= auto
SEED    ?= 0
DEVICE  ?= auto
NB      ?=
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.segedu-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: book html test lab env info clean-env help

help:
	@echo "make book [PROFILE=smoke|cpu|gpu|auto] [NB='00 01']  execute chapters with papermill, build HTML"
	@echo "make html                                         build the HTML book from committed outputs"
	@echo "make test                                         the whole test suite (unit, notebooks, nbval)"
	@echo "make lab                                          JupyterLab on the book, jupytext pairing on"
	@echo "make env                                          only create/refresh .venv"

# The environment: re-made when pyproject.toml or the lock changes.
$(STAMP): pyproject.toml requirements.lock constraints-torch.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "segedu needs Python 3.10 or newer; found " + sys.version.split()[0] + ". Set PYTHON=/path/to/python3.10+")'
	@# torch with its CUDA libraries takes about 6.5 GB; a full disk would otherwise surface as pip's
	@# bare "OSError: [Errno 28] No space left on device" halfway through the install.
	@test -x $(PY) || $(PYTHON) -c 'import shutil, sys; free = shutil.disk_usage(".").free / 2**30; sys.exit(0 if free >= 8 else f"segedu: creating $(VENV) needs about 8 GB free disk in $(CURDIR) (the environment about 6.5 GB, a test run about 1.5 GB more); only {free:.1f} GB is free")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# requirements.lock pins every package for CPython 3.11 (the book's runs); on another Python
	@# only the torch + torchvision pair is pinned and pip picks the rest for that interpreter.
	@# DenseCRF (pydensecrf2) is an optional extra compiled from source, under the same pins; without
	@# a C++ compiler the book and the tests skip it (segedu.inference.crf explains how to install
	@# it) and everything else works.
	@if $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then lock=requirements.lock; \
	else lock=constraints-torch.txt; echo "segedu: Python is not 3.11, the lock's version: pinning only torch and torchvision"; fi; \
	echo "segedu: installing the pinned environment into $(VENV) from $$lock (first time: several minutes)"; \
	$(PY) -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
		-c $$lock -e '.[book,dev]' 2>&1 | { grep -v '^WARNING: Location' || true; } || exit 1; \
	$(PY) -m pip install --quiet --disable-pip-version-check --no-warn-script-location -c $$lock 'pydensecrf2>=1.1' \
		>/dev/null 2>&1 && echo "segedu: optional DenseCRF (pydensecrf2) installed" \
		|| echo "segedu: optional DenseCRF (pydensecrf2) could not be built here (needs a C++ compiler); skipping it"
	@$(PY) -c 'import torch, torchvision, torch.nn.functional as F; x = torch.ones(1, 3, 8, 8); F.conv2d(x, torch.ones(2, 3, 3, 3)); print("segedu: torch", torch.__version__, "+ torchvision", torchvision.__version__, "import and run a conv")'
	@touch $(STAMP)

env: $(STAMP)

info: $(STAMP)
	$(PY) -m segedu info

book: $(STAMP)
	$(PY) -m segedu book run --profile $(PROFILE) --seed $(SEED) --device $(DEVICE) $(NB)
	$(PY) -m segedu book html

html: $(STAMP)
	$(PY) -m segedu book html

test: $(STAMP)
	$(PY) -m pytest tests book --nbval-lax --nbval-current-env -p no:cacheprovider

# .jupyter/ (see its README.txt) makes a double-click on a chapter's .py open it as a notebook; jupytext's
# contents manager (enabled by the jupytext package) pairs it with its .ipynb via book/jupytext.toml.
lab: $(STAMP)
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
		$(PY) -m jupyter lab --notebook-dir=. book/00_how_to_use.py

clean-env:
	rm -rf $(VENV)
