# The two newcomer commands: `make run` (the hub on the memory backend) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
BACKEND ?= memory://
BROWSER_DIR := tests/deploy/browser

.PHONY: run test test-matrix lint venv system-packages browser-deps bench bench-packages clean docs docs-serve

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

system-packages:
	bash scripts/system-packages.sh

# playwright-core for the browser test (tests/deploy/test_browser.py). It drives the system's
# Chromium and never downloads a browser. npm writes node_modules/.package-lock.json last.
$(BROWSER_DIR)/node_modules/.package-lock.json: $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

browser-deps: system-packages $(BROWSER_DIR)/node_modules/.package-lock.json

run: venv
	$(BIN)/fasterapi run examples.demo_hub:app --host $(HOST) --port $(PORT) --backend $(BACKEND)

lint: venv
	$(BIN)/ruff check FasterAPI tests examples benchmarks
	$(BIN)/mypy

test: venv system-packages browser-deps lint
	$(BIN)/pytest -q

# `make test-matrix`, for releases (CI runs `make test`): the tests on Python 3.11, 3.12 and
# 3.13, each with the lowest and the newest dependency versions pyproject.toml admits, in
# fresh virtualenvs under .matrix/ made with uv (scripts/test_matrix.py says how). The 3.11
# lowest cell runs the whole suite, the others all but tests/cluster, tests/deploy and
# tests/faults. MATRIX_ARGS="--cells 3.13-lowest,3.13-newest" runs some cells only.
MATRIX_ARGS ?=

test-matrix: venv system-packages browser-deps
	$(BIN)/python scripts/test_matrix.py $(MATRIX_ARGS)

# The documentation site (mkdocs.yml, docs/): built into site/, failing on any warning.
# NO_MKDOCS_2_WARNING: mkdocs-material's end-of-life banner, printed on every build.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr $(HOST):$(PORT)

clean:
	rm -rf $(VENV) .matrix site .pytest_cache .mypy_cache .ruff_cache $(BROWSER_DIR)/node_modules test-artifacts

# `make bench`: the side-by-side benchmarks in their own virtualenv, .bench-venv (the peers
# never enter .venv): WebSocket fan-out across stacks and workers (benchmarks/fanout.py, ~17
# minutes by default) and in-process HTTP (benchmarks/http_asgi.py), then docs/benchmarks.md
# and docs/benchmarks.png. Raw results go to benchmarks/results/ (not in git). Needs
# /usr/bin/redis-server. BENCH_ARGS go to fanout.py: `make bench BENCH_ARGS=--quick` is a
# smoke run, `BENCH_ARGS="--stacks fasterapi,bare-asgi --rounds 1"` a partial one.
BENCH_VENV ?= .bench-venv
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_RESULTS := benchmarks/results
BENCH_ARGS ?=

$(BENCH_VENV)/.installed: pyproject.toml benchmarks/requirements-peers.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/pip install -q --upgrade pip
	$(BENCH_BIN)/pip install -q -e '.[redis,server]' -r benchmarks/requirements-peers.txt
	touch $@

# Then 50,000 idle connections on one box (benchmarks/connections.py, ~10 minutes; root, to raise
# the hard open-files limit) and HTTP through real servers with wrk (benchmarks/http_wrk.py, ~6
# minutes). A --quick in BENCH_ARGS makes those two smoke runs too; BENCH_CONNECTIONS_ARGS and
# BENCH_WRK_ARGS go to them alone (e.g. BENCH_CONNECTIONS_ARGS="--receivers 20000").
BENCH_CONNECTIONS_ARGS ?=
BENCH_WRK_ARGS ?=
BENCH_QUICK := $(if $(findstring --quick,$(BENCH_ARGS)),--quick)

# wrk, for benchmarks/http_wrk.py only (the tests do not use it, so system-packages leaves it out).
bench-packages:
	@command -v wrk >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq wrk >/dev/null; \
		else echo "benchmarks/http_wrk.py needs wrk: apt-get install wrk" >&2; exit 1; fi; }

# A failed run still gets its report (the page lists the failures); make fails after it.
bench: $(BENCH_VENV)/.installed bench-packages
	mkdir -p $(BENCH_RESULTS)
	rm -f $(BENCH_RESULTS)/connections.json $(BENCH_RESULTS)/http_wrk.json  # no stale section on the page
	$(BENCH_BIN)/python benchmarks/fanout.py --out $(BENCH_RESULTS)/fanout.json $(BENCH_ARGS); \
		echo $$? > $(BENCH_RESULTS)/fanout.status
	$(BENCH_BIN)/python benchmarks/connections.py --out $(BENCH_RESULTS)/connections.json $(BENCH_QUICK) \
		$(BENCH_CONNECTIONS_ARGS); echo $$? > $(BENCH_RESULTS)/connections.status
	$(BENCH_BIN)/python benchmarks/http_wrk.py --out $(BENCH_RESULTS)/http_wrk.json $(BENCH_QUICK) $(BENCH_WRK_ARGS); \
		echo $$? > $(BENCH_RESULTS)/http_wrk.status
	$(BENCH_BIN)/python benchmarks/http_asgi.py > $(BENCH_RESULTS)/http_asgi.txt
	cat $(BENCH_RESULTS)/http_asgi.txt
	$(BENCH_BIN)/python benchmarks/report.py --fanout $(BENCH_RESULTS)/fanout.json --http $(BENCH_RESULTS)/http_asgi.txt \
		--connections $(BENCH_RESULTS)/connections.json --wrk $(BENCH_RESULTS)/http_wrk.json
	exit $$(cat $(BENCH_RESULTS)/fanout.status $(BENCH_RESULTS)/connections.status $(BENCH_RESULTS)/http_wrk.status | sort -n | tail -1)
