# The two newcomer commands: `make run` (the hub on the memory backend) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint venv system-packages bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

system-packages:
	bash scripts/system-packages.sh

run: venv
	$(BIN)/uvicorn examples.websockets_page:app --host $(HOST) --port $(PORT)

lint: venv
	$(BIN)/ruff check FasterAPI tests examples benchmarks
	$(BIN)/mypy

test: venv system-packages lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
