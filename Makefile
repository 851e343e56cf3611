# tweetpulse — the front door. `make demo` starts everything; `make test` installs and tests.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VENV_AF := .venv-airflow
# This machine's pip config lists file:// mirrors that warn on every package; keep the log readable.
QUIET_PIP := grep -v "Location 'file:" || true

.PHONY: help install demo up down status screenshots chromium haproxy test test-service test-long test-airflow lint bench gpu-check clean

help:
	@echo "make demo      install, start the local stack, retrain through Airflow, inspect tweets, summary"
	@echo "               (quick heads; TWEETPULSE_DEMO_FULL=1 trains the full default, fine-tuned encoder)"
	@echo "make install   create .venv (service) and .venv-airflow (Airflow, no torch)"
	@echo "make test      install, then run the whole test suite"
	@echo "make up        start the local stack (Postgres, MLflow, ModelRunner, Airflow, SMTP sink)"
	@echo "               (TWEETPULSE_STACK_REPLICAS=N: N serving replicas + a train process behind HAProxy)"
	@echo "make down      stop every process the stack started"
	@echo "make status    what the stack runs"
	@echo "make screenshots  PNGs of the running stack (after make demo) into docs/images/ (needs chromium)"
	@echo "make lint      ruff"
	@echo "make bench     benchmarks (encoder throughput, embedding cache cold vs warm)"
	@echo "make gpu-check on an NVIDIA GPU machine: training stages and serving on CUDA (ARGS=--quick)"

install: $(VENV)/.installed $(VENV_AF)/.installed

$(VENV)/.installed: requirements/service.lock requirements/dev.lock requirements/teacher.txt pyproject.toml
	@echo "==> installing the service environment in $(VENV)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	@$(VENV)/bin/python -m pip install -q -r requirements/service.lock -r requirements/dev.lock 2>&1 | $(QUIET_PIP)
	@$(VENV)/bin/python -m pip install -q --no-deps -r requirements/teacher.txt 2>&1 | $(QUIET_PIP)
	@$(VENV)/bin/python -m pip install -q --no-deps -e . 2>&1 | $(QUIET_PIP)
	@$(VENV)/bin/python -c "import torch, transformers, pgserver, model_runner" # fail here, not in tests
	@touch $@

$(VENV_AF)/.installed: requirements/airflow.lock
	@echo "==> installing the Airflow environment in $(VENV_AF)"
	@test -x $(VENV_AF)/bin/python || $(PYTHON) -m venv $(VENV_AF)
	@$(VENV_AF)/bin/python -m pip install -q --upgrade pip 2>&1 | $(QUIET_PIP)
	@$(VENV_AF)/bin/python -m pip install -q -r requirements/airflow.lock 2>&1 | $(QUIET_PIP)
	@$(VENV_AF)/bin/python -c "import airflow.sdk, tweepy, httpx"
	@if $(VENV_AF)/bin/python -c "import torch" 2>/dev/null; then echo "torch leaked into $(VENV_AF)"; exit 1; fi
	@touch $@

# The front door: the local stack, then the main job through Airflow (weekly_retrain on the default
# data: quick heads on the frozen encoder unless TWEETPULSE_DEMO_FULL=1), one tweet_inspector run that
# mails the daily digest, and a summary of the champion, the mail and where to look.
demo: install
	$(VENV)/bin/python infra/stack/stack.py demo

# The local stack without Docker (infra/stack/): embedded Postgres + pgvector, MLflow server, ModelRunner,
# Airflow 3 (api-server, scheduler, dag-processor, triggerer) and an SMTP sink, all on loopback.
up: install
	@if [ "$${TWEETPULSE_STACK_REPLICAS:-1}" != 1 ]; then $(MAKE) --no-print-directory haproxy; fi
	$(VENV)/bin/python infra/stack/stack.py up

down:
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python infra/stack/stack.py down; fi

status:
	@$(VENV)/bin/python infra/stack/stack.py status

# The docs' pictures (docs/images/*.png) from the running stack after `make demo`: headless Chromium from
# Debian's `chromium` package (prerequisite: `apt-get install chromium`; installed here when run as root),
# driven by Playwright for Python (installed into $(VENV) when missing; not part of the locks).
# Debian's Chromium: the offline /docs test and the screenshots drive it headless.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "the browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi; }

# Debian's HAProxy: the balancer of the local stack's serving replicas (TWEETPULSE_STACK_REPLICAS > 1)
# and of the replica test.
haproxy:
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; \
		else echo "the serving replicas need Debian's haproxy: sudo apt-get install haproxy"; exit 1; fi; }

screenshots: $(VENV)/.installed chromium
	@$(VENV)/bin/python -c "import playwright" 2>/dev/null || \
		{ $(VENV)/bin/python -m pip install -q playwright 2>&1 | $(QUIET_PIP); }
	$(VENV)/bin/python infra/stack/screenshots.py $(ARGS)

# The two suites run side by side: they use separate virtual environments, databases and pytest
# temp folders, and the Airflow suite (a few minutes, mostly waiting on DAG runs) fits inside the
# service suite's wall time. Its output follows the service suite's.
test: install lint
	@mkdir -p .tweetpulse; $(MAKE) --no-print-directory test-airflow > .tweetpulse/test-airflow.log 2>&1 & af=$$!; \
	$(MAKE) --no-print-directory test-long > .tweetpulse/test-long.log 2>&1 & st=$$!; \
	rc=0; $(MAKE) --no-print-directory test-service || rc=$$?; \
	af_rc=0; wait $$af || af_rc=$$?; echo "==> Airflow suite"; cat .tweetpulse/test-airflow.log; \
	st_rc=0; wait $$st || st_rc=$$?; echo "==> long suite"; cat .tweetpulse/test-long.log; \
	if [ $$rc -ne 0 ] || [ $$af_rc -ne 0 ] || [ $$st_rc -ne 0 ]; then exit 1; fi

# The long tests: those that start whole process trees (the local stack with Airflow; serving replicas
# and a train process behind HAProxy) and those that train on the real data. A third suite beside the
# other two, so that the service suite's wall time is not their sum.
LONG_TESTS := tests/infra/test_local_stack.py tests/infra/test_replicas.py tests/training/test_real_data.py
test-long: haproxy
	@TWEETPULSE_REQUIRE_HAPROXY=1 $(VENV)/bin/python -m pytest $(LONG_TESTS) -p no:cacheprovider \
		--basetemp=$(CURDIR)/.tweetpulse/pytest-long

# The clean venvs of the two "outside" tests (tests/fresh_venvs.py) install in the background while
# the suite runs; those tests wait for them.
test-service: chromium
	@mkdir -p .tweetpulse; $(VENV)/bin/python -m tests.fresh_venvs > .tweetpulse/fresh-venvs.log 2>&1 & prebuild=$$!; \
	TWEETPULSE_REQUIRE_BROWSER=1 $(VENV)/bin/python -m pytest tests --ignore=tests/airflow \
		$(addprefix --ignore=,$(LONG_TESTS)); rc=$$?; \
	wait $$prebuild; cat .tweetpulse/fresh-venvs.log; exit $$rc

# The DAG tests run in Airflow's own environment (no torch); they start the ModelRunner from $(VENV).
test-airflow:
	@if [ -n "$$(find tests/airflow -name 'test_*.py' 2>/dev/null)" ]; then \
		$(VENV_AF)/bin/python -m pytest tests/airflow -p no:cacheprovider --basetemp=$(CURDIR)/.tweetpulse/pytest-airflow; \
	else echo "no Airflow tests yet"; fi

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks $(ARGS)

# One prepared run on a GPU machine (JSON + Markdown rows into benchmarks/out/); exits 2 without CUDA.
gpu-check: $(VENV)/.installed
	$(VENV)/bin/python -m benchmarks.gpu_check $(ARGS)

clean:
	rm -rf $(VENV) $(VENV_AF) .pytest_cache .ruff_cache
