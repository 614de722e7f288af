# Omniloyal: `make run` to try it, `make test` to check it.
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
REDIS_HOST ?= 127.0.0.1

.PHONY: install run test test-sqlite test-postgres lint format bench bench-segments bench-smoke bench-notify bench-campaigns clean

# pip is quiet (its output would bury what `make run` prints); say once why nothing moves.
$(STAMP): pyproject.toml
	@echo "installing dependencies into $(VENV) (first run, about a minute)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Run the service on the embedded default (SQLite + in-process queue): migrate, seed, serve.
## `make run PORT=8080` (or FLASK_RUN_PORT=8080) serves on another port; the default is 5000.
run: install
	@$(BIN)/omniloyal db upgrade
	@$(BIN)/omniloyal demo --if-empty
	@$(BIN)/omniloyal run --log-format console $(if $(PORT),--port $(PORT))

## The whole suite: lint, then SQLite (embedded default) and PostgreSQL + Redis side by side
## (the SQLite run uses no server, so the two share nothing; each run's output is printed
## whole when it ends). The CI budget is 15 minutes; one after the other they took ~15.
test: install lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres

test-sqlite: install
	OMNILOYAL_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider

test-postgres: install
	@if ! $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  if [ "$$CI" = "true" ]; then echo "FAIL: PostgreSQL unreachable at $(PG_URL) (CI=true)"; exit 1; fi; \
	  echo "WARNING: PostgreSQL unreachable at $(PG_URL): the PostgreSQL + Redis suite did NOT run."; \
	  echo "         Start PostgreSQL and Redis (or run .ci/run) to run it."; exit 0; \
	fi; \
	OMNILOYAL_TEST_DB=postgres OMNILOYAL_TEST_PG=$(PG_URL) $(BIN)/pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks against gunicorn on PostgreSQL, beside raw pgbench baselines (not a test):
## every scenario on an empty database, then on a retailer's history (1M members, 10M
## ledger entries, ...), 60 s each; then where the time per request goes (bench.flame).
## Smaller: make bench BENCH_SCALE=0.01 BENCH_DURATION=10
bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.segments
	$(BIN)/python -m bench.notifications
	$(BIN)/python -m bench.campaigns
	$(BIN)/python -m bench.flame

## Segment counts only (1M members; smaller: BENCH_SEGMENT_MEMBERS=100000):
bench-segments: install
	$(BIN)/python -m bench.segments

## Notifications alone: 100,000 outbox events -> notifications consumer -> RQ (2 workers) ->
## recording provider, in chunks of 500, beside a raw Redis push + PostgreSQL update baseline
## batched the same way. Smaller: make bench-notify BENCH_NOTIFY_MESSAGES=10000; with every
## consumer of the events (campaign profiles, webhooks): BENCH_NOTIFY_CONSUMERS=all
bench-notify: install
	$(BIN)/python -m bench.notifications

## Campaign fan-out alone: 50,000 recipients out of 1,000,000 members, end to end (audience
## snapshot, codes issued, messages rendered and handed to the recording provider) with 2
## workers, beside a raw COPY of as many rows.
## Other sizes: make bench-campaigns BENCH_CAMPAIGN_RECIPIENTS=100000 BENCH_CAMPAIGN_MEMBERS=200000
bench-campaigns: install
	$(BIN)/python -m bench.campaigns

## The same in about two minutes: a small history, 5 s runs, one worker setting.
bench-smoke: install
	BENCH_SCALE=0.005 BENCH_DURATION=5 BENCH_MEMBERS=200 BENCH_CODES=20000 \
	  $(BIN)/python -m bench --workers sync:4
	BENCH_NOTIFY_MESSAGES=2000 $(BIN)/python -m bench.notifications
	BENCH_CAMPAIGN_RECIPIENTS=2000 BENCH_CAMPAIGN_MEMBERS=20000 $(BIN)/python -m bench.campaigns

clean:
	rm -rf $(VENV) instance .pytest_cache
