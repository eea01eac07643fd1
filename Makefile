# Developer entry points. The native services (Kafka, ClickHouse, Prometheus, Schema Registry)
# are managed by deploy/local/stack; see `deploy/local/stack help`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

STACK := deploy/local/stack
VENV  := .venv/bin
# native/ builds with rustup's cargo, which is not always on PATH.
export PATH := $(PATH):$(HOME)/.cargo/bin

.PHONY: help install up down status demo lint test test-cluster bench peer-venv

help:
	@echo "make install   apt packages, Kafka jars, .venv (idempotent)"
	@echo "make up        start Kafka, ClickHouse, Prometheus and the Schema Registry on loopback"
	@echo "make down      stop them"
	@echo "make demo      install, up, then run the demo against the local stack"
	@echo "make lint      ruff, mypy, import contracts; rustfmt and clippy on native/"
	@echo "make test      lint, then pytest (integration tests start the stack themselves)"
	@echo "make test-cluster  only the tests on the cluster profile (deploy/local/stack up --cluster)"
	@echo "make bench     install, up, .venv-peer, then the benchmarks"
	@echo "make peer-venv  .venv-peer, the bench's Quix Streams peer (idempotent)"

# The cluster profile's extras (ZooKeeper's jars) too: make test runs tests on it.
install:
	$(STACK) install
	$(STACK) install --cluster

up: install
	$(STACK) up

down:
	$(STACK) down

status:
	$(STACK) status

# The demo talks to the local stack whatever ports it was started on.
demo: install up
	eval "$$($(STACK) env)" && $(VENV)/streams topics && $(VENV)/streams schemas && $(VENV)/streams migrate
	$(STACK) up worker eraser
	eval "$$($(STACK) env)" && $(VENV)/streams demo --prometheus-url "$$STREAMS_LOCAL_PROMETHEUS_URL"

lint: install
	$(VENV)/ruff check streams tests native
	$(VENV)/mypy
	$(VENV)/lint-imports
	cd native && cargo fmt --check && cargo clippy --release --quiet -- -D warnings

test: lint
	$(VENV)/pytest

test-cluster: install
	$(VENV)/pytest tests/integration/test_cluster_profile.py

# The bench's Quix Streams peer runs in its own virtualenv (tests/bench/peer/install-venv).
peer-venv:
	tests/bench/peer/install-venv

# End-to-end benchmark (docs/benchmarks.md); e.g. make bench BENCH_ARGS="--quick --profile".
bench: install up peer-venv
	eval "$$($(STACK) env)" && $(VENV)/python -m tests.bench $(BENCH_ARGS)
