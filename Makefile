# sosc: make demo | make test | make lint | make bench | make app
# Every target installs into .venv first if needed (a fresh machine needs only python3).
# EXTRAS: the extras installed (default dev,app: the suite's tools and sosc-app, whose page the suite
# tests in a real headless browser; `make test` also installs Debian's chromium when missing, as root).

PYTHON ?= python3
VENV   ?= .venv
EXTRAS ?= dev,app
PY     := $(VENV)/bin/python
comma  := ,
STAMP  := $(VENV)/.sosc-installed-$(subst $(comma),-,$(EXTRAS))
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export GRADIO_ANALYTICS_ENABLED ?= False

.PHONY: install browser demo test lint bench app clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m sosc.demo

# Debian's chromium and chromium-driver for the browser test of sosc-app (never a downloaded browser)
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: chromium and chromium-driver are missing: the browser test of sosc-app is skipped"; fi; \
	fi

test: install browser
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests

bench: install
	$(PY) -m sosc.bench

app: install
	$(VENV)/bin/sosc-app

clean:
	rm -rf logs lightning_logs .pytest_cache .ruff_cache
