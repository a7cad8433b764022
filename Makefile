# labelops: the front door. `make test` runs every test against the real local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m devstack
# Which parts of the local stack stack-up starts, e.g. `make stack-up COMPONENTS="postgres kafka"`.
COMPONENTS ?= postgres kafka kube
# PostgreSQL's commits: durable (fsync on, the default, what demo, bench and chaos measure with)
# or fast (fsync, synchronous_commit and full_page_writes off; a crash loses acknowledged commits).
DURABILITY ?= durable
export LABELOPS_POSTGRES_DURABILITY := $(DURABILITY)

.PHONY: help demo test test-unit test-tools lint venv install stack-up stack-down stack-env \
	stack-build image crds bench bench-scale chaos

# The main job: one RLHF campaign from kubectl apply to exported preference pairs.
demo: install ## run one RLHF campaign end to end on the local stack (starts what it needs)
	$(PY) -m devstack.demo

# The labeling-page tests drive Debian's Chromium; Playwright cannot download its own here.
CHROMIUM := /usr/bin/chromium

test: install ## run every test (unit, tools, integration, e2e); starts the stack it needs
	@[ -x $(CHROMIUM) ] || { echo "make test: $(CHROMIUM) is missing, and the labeling-page tests need it." >&2; \
	  echo "  install it: sudo apt-get install -y chromium   (.ci/run does this for you)" >&2; exit 1; }
	$(PY) -m pytest tests

test-unit: install ## run the unit tests only: Python, no stack, no external tools
	$(PY) -m pytest tests/unit

test-tools: install ## run the tests that drive helm, kstatus, Go programs, terraform and pip (no stack)
	$(PY) -m pytest tests/tools

lint: install ## ruff, mypy, import layers (lint-imports), hadolint, terraform fmt
	$(PY) -m ruff check operator devstack tests bench
	$(PY) -m ruff format --check operator devstack tests bench
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/hadolint Dockerfile
	terraform fmt -check -recursive terraform

# `make help` prints every target that carries a `## what it does` comment, in file order.
help: ## this list
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(PY) ## create the virtual environment .venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# A stamp, so `make test` reinstalls only when the dependencies change.
install: $(VENV)/.installed ## install labelops and its dev extras into .venv (again only when pyproject.toml changes)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

stack-up: install ## start PostgreSQL, Kafka and the Kubernetes control plane; writes .stack/env (COMPONENTS=..., DURABILITY=durable|fast)
	$(STACK) up --components $(COMPONENTS)

# Works without the venv too (nothing can be running then), so it is safe in traps.
stack-down: ## stop everything stack-up started
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no $(VENV): nothing to stop"; fi

stack-env: ## print the running stack's settings (the export lines of .stack/env)
	@$(STACK) env

stack-build: install ## build or fetch the stack's binaries without starting anything (COMPONENTS=...)
	$(STACK) build --components $(COMPONENTS)

IMAGE ?= labelops:0.1.0
# One image for the operator and the workers. Needs a Docker engine; this machine has none.
image: ## build the one image of the operator and the workers (needs a Docker engine)
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is running here; on a machine with Docker: docker build -t $(IMAGE) ."; exit 1; }
	docker build -t $(IMAGE) .

# The chart carries the same file.
crds: install ## regenerate the CRDs (campaigns, labeler pools) from the pydantic models, into crds/ and the chart
	$(PY) -m labelops.api.crd > crds/labelingcampaigns.labelops.dev.yaml
	cp crds/labelingcampaigns.labelops.dev.yaml charts/labelops/crds/
	$(PY) -m labelops.api.crd labelerpools > crds/labelerpools.labelops.dev.yaml
	cp crds/labelerpools.labelops.dev.yaml charts/labelops/crds/

bench: install ## benchmarks on the real local stack; figures and machine details go to bench/results/
	$(PY) bench/run.py

bench-scale: install ## the operator at 1,000 campaigns on a private stack: time to all Ready, RSS, steady-state requests/s
	$(PY) bench/bench_campaigns_at_scale.py

chaos: install ## chaos suite: PostgreSQL, Kafka and a worker killed, connections cut and blackholed, under 32 labelers; report in bench/results/chaos.md
	$(PY) bench/run_chaos.py
