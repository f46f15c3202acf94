# One command to run, one to test. Everything else is a detail of these two.
#   make test       everything: unit, contract, service, security, e2e (PYTEST_ARGS to narrow);
#                   a test whose PostgreSQL/Redis/RabbitMQ/nginx is missing skips with the reason
#                   (fails instead under AGORA_REQUIRE_SERVICES=1, as in CI)
#   make test-fast  no service needed, under a minute: tests/unit and the contract suites on
#                   their embedded backends (marker `embedded`: memory, disk, log, local)
#   make bench-quick  perf regression guard: quick benchmarks against bench/targets.py
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Stamps: what each target needs is installed once. `make run` needs Agora and its
# dependencies only; tests, lint and benchmarks need the dev extra (which includes them).
RUN_STAMP := $(VENV)/.installed-run
STAMP     := $(VENV)/.installed
# gRPC stubs: generated from protos/ into the git-ignored src/agora/grpc_gen (by the editable
# install too, which is how `make run` gets them; this target regenerates them with the dev
# tools when a .proto changes). A wheel ships its own, generated while it is built
# (setup.py): .ci/wheel-check builds one and serves from it.
GRPC   := src/agora/grpc_gen/.generated
PROTOS := $(shell find protos -name '*.proto')

.PHONY: run test test-fast lint bench bench-quick charts install install-run clean web web-api

# The web client (web/, docs/web.md): built into web/dist by Vite when a source changed,
# with node and npm only (npm ci from package-lock.json, no browser download).
NODE_STAMP  := node_modules/.package-lock.json
WEB_DIST    := web/dist/index.html
WEB_SOURCES := $(shell find web/src web/scripts -type f 2>/dev/null) web/index.html \
	web/vite.config.ts web/tsconfig.json package-lock.json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# A .proto change reinstalls: the editable install regenerates the stubs.
$(RUN_STAMP): pyproject.toml setup.py $(PROTOS) | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $(RUN_STAMP)

$(STAMP): pyproject.toml setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP) $(RUN_STAMP)

$(GRPC): $(STAMP) $(PROTOS)
	$(BIN)/python -m agora.grpc.build

install: $(STAMP) $(GRPC)

install-run: $(RUN_STAMP)

$(NODE_STAMP): package-lock.json
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

$(WEB_DIST): $(WEB_SOURCES) | $(NODE_STAMP)
	npm run -s web:build

web: $(WEB_DIST)

# After an API change: the merged OpenAPI document, then the client's types (tsc fails
# where the client no longer fits the API).
web-api: $(STAMP) | $(NODE_STAMP)
	$(BIN)/python web/scripts/dump_openapi.py web/openapi.json
	npm run -s web:api
	npm run -s web:check

run: $(RUN_STAMP) $(WEB_DIST)
	$(BIN)/agora db upgrade
	$(BIN)/agora serve

test: $(STAMP) $(GRPC) $(WEB_DIST)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) $(GRPC)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)
	$(BIN)/pytest -q tests/contract -m "embedded and not postgres" $(PYTEST_ARGS)

lint: $(STAMP) $(GRPC)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Perf regression guard (docs/benchmarks.md): the quick form of each benchmark with a
# target, each ratio against bench/targets.py; exit 1 when one is worse than its target
# by more than the measured noise. About 2 minutes; not part of `make test`.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.guard

# The charts in docs/benchmarks/ from the newest result of each benchmark.
charts: $(STAMP)
	$(BIN)/python -m bench.charts

clean:
	rm -rf $(VENV) var src/agora/grpc_gen src/agora/.grpc_gen* .pytest_cache .mypy_cache .ruff_cache \
		build dist src/*.egg-info web/dist
