# labelops: the front door. `make test` runs every test against the real local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m devstack
# Which parts of the local stack stack-up starts, e.g. `make stack-up COMPONENTS="postgres kafka"`.
COMPONENTS ?= postgres kafka kube

.PHONY: help venv install stack-up stack-down stack-env stack-build test test-unit lint

help:
	@echo "make install     create $(VENV) and install labelops with its dev extras"
	@echo "make test        run all tests (unit, integration, e2e); starts the stack it needs"
	@echo "make test-unit   run the unit tests only (no stack)"
	@echo "make stack-up    start PostgreSQL, Kafka and the Kubernetes control plane; writes .stack/env"
	@echo "make stack-down  stop everything stack-up started"
	@echo "make lint        ruff and mypy"

venv: $(PY)

$(PY):
	$(PYTHON) -m venv $(VENV)

# A stamp, so `make test` reinstalls only when the dependencies change.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

stack-up: install
	$(STACK) up --components $(COMPONENTS)

# Works without the venv too (nothing can be running then), so it is safe in traps.
stack-down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no $(VENV): nothing to stop"; fi

stack-env:
	@$(STACK) env

stack-build: install
	$(STACK) build --components $(COMPONENTS)

test: install
	$(PY) -m pytest tests

test-unit: install
	$(PY) -m pytest tests/unit

lint: install
	$(PY) -m ruff check operator devstack tests bench
	$(PY) -m ruff format --check operator devstack tests bench
	$(PY) -m mypy
	$(VENV)/bin/hadolint Dockerfile
	terraform fmt -check -recursive terraform

.PHONY: image
IMAGE ?= labelops:0.1.0
# One image for the operator and the workers. Needs a Docker engine; this machine has none.
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine is running here; on a machine with Docker: docker build -t $(IMAGE) ."; exit 1; }
	docker build -t $(IMAGE) .

.PHONY: demo crds
# The main job: one RLHF campaign from kubectl apply to exported preference pairs.
demo: install
	$(PY) -m devstack.demo

# The CRD is generated from the pydantic models; the chart carries the same file.
crds: install
	$(PY) -m labelops.api.crd > crds/labelingcampaigns.labelops.dev.yaml
	cp crds/labelingcampaigns.labelops.dev.yaml charts/labelops/crds/

.PHONY: bench
# Benchmarks on the real local stack; figures and machine details go to bench/results/.
bench: install
	$(PY) bench/run.py
