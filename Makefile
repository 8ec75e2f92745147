# segstream: the commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_PORT ?= 9092
REDIS_PORT ?= 6379
REDIS_CLUSTER_PORT ?= 7000
export KAFKA_PORT REDIS_PORT REDIS_CLUSTER_PORT
export SEGSTREAM_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export SEGSTREAM_REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0

.PHONY: help install demo test test-unit check services-up services-down services-status bench chaos clean

help:
	@echo "make demo           run the pipeline in-process on simulated shoppers (no servers)"
	@echo "make test           install, start Kafka, Redis and a Redis Cluster, run every test, stop them"
	@echo "make check          ruff check, ruff format --check, mypy --strict"
	@echo "make services-up    start Kafka (127.0.0.1:$(KAFKA_PORT)), Redis (127.0.0.1:$(REDIS_PORT)) and a Redis Cluster (:$(REDIS_CLUSTER_PORT)-)"
	@echo "make services-down  stop them and delete their data"
	@echo "make bench          every benchmark against the real servers, then a table of the figures"
	@echo "make chaos          the chaos suite at full size (100,000 malformed messages, 200,000 events...)"

install: $(VENV)/.installed

# The runtime dependencies only: all `make demo` needs, so a newcomer's first run is quick.
$(VENV)/.runtime: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "python 3.11+ is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

# Then the dev tools and the evaluation's libraries (scikit-learn, matplotlib).
$(VENV)/.installed: $(VENV)/.runtime
	$(BIN)/pip install --quiet -e '.[dev,eval]'
	@touch $@

demo: $(VENV)/.runtime
	$(BIN)/segstream demo

services-up: install
	scripts/services.sh up

services-down:
	scripts/services.sh down

services-status:
	@scripts/services.sh status

check: install
	$(BIN)/ruff check stream operators tests bench dashboards
	$(BIN)/ruff format --check stream operators tests bench dashboards
	$(BIN)/mypy

test-unit: install
	$(BIN)/pytest -q tests/operators tests/stream -m "not kafka and not redis"

# Servers are stopped whatever the tests' outcome; the exit status is pytest's (or check's).
test: check services-up
	@status=0; $(BIN)/pytest -q -p no:cacheprovider || status=$$?; \
	  scripts/services.sh down; exit $$status

# The chaos suite at full size; `make test` runs it reduced.
chaos: services-up
	@status=0; SEGSTREAM_CHAOS_MESSAGES=100000 SEGSTREAM_CHAOS_EVENTS=200000 \
	  SEGSTREAM_CHAOS_KILLS=10 $(BIN)/pytest -q -s -p no:cacheprovider \
	  tests/chaos || status=$$?; scripts/services.sh down; exit $$status

# Every figure of the throughput and API issues, then one table of them (bench/report.py) with
# the targets; JSON in bench/results/. The baseline is the last commit before the columnar core,
# checked out beside this one (build/baseline) for the side-by-side comparisons.
BENCH_BASELINE ?= 784a701
bench: services-up
	@test -d build/baseline || git worktree add --detach build/baseline $(BENCH_BASELINE)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/throughput.py --baseline build/baseline
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/two_processes.py
	@# Needs the UCI file (SEGSTREAM_ONLINE_RETAIL); without it the table says "not measured".
	-$(BIN)/python bench/replay.py --baseline build/baseline
	$(BIN)/python bench/api.py
	$(BIN)/python bench/evaluate.py
	$(BIN)/python bench/report.py

clean: services-down
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
