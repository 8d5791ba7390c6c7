# The two newcomer commands: `make run` (the hub on the memory backend) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
BACKEND ?= memory://
BROWSER_DIR := tests/deploy/browser

.PHONY: run test lint venv system-packages browser-deps bench clean

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(BROWSER_DIR)/node_modules test-artifacts
