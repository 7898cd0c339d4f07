# sosc: make demo | make test | make lint | make bench | make app
# Every target installs into .venv first if needed (a fresh machine needs only python3).
# EXTRAS: the extras installed (default dev; CI's .ci/run uses dev,app for the browser test of sosc-app).

PYTHON ?= python3
VENV   ?= .venv
EXTRAS ?= dev
PY     := $(VENV)/bin/python
comma  := ,
STAMP  := $(VENV)/.sosc-installed-$(subst $(comma),-,$(EXTRAS))
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install demo test lint bench app clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
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

app:
	$(MAKE) install EXTRAS=dev,app
	$(VENV)/bin/sosc-app

clean:
	rm -rf logs lightning_logs .pytest_cache .ruff_cache
