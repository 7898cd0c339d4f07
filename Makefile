# sosc: make demo | make test | make lint | make bench
# Every target installs into .venv first if needed (a fresh machine needs only python3).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sosc-installed
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m sosc.demo

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests

bench: install
	$(PY) -m sosc.bench

clean:
	rm -rf logs lightning_logs .pytest_cache .ruff_cache
