# OtterMQ: `make run` starts the broker, `make test` runs the whole suite (what CI runs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= ::
PORT ?= 5672
HTTP_PORT ?= 15672
DATA_DIR ?= ./data

.PHONY: run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

# tools/test_deps.sh: the system Chromium the web UI tests drive (apt-get when missing).
$(VENV)/.installed-test: pyproject.toml constraints.txt tools/test_deps.sh | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	bash tools/test_deps.sh
	touch $(VENV)/.installed $@

# Bytecode is compiled first (a no-op when up to date), as an installed package has it: where
# PYTHONDONTWRITEBYTECODE is set, every start would otherwise compile every module again.
run: $(VENV)/.installed
	$(BIN)/python -m compileall -q ottermq memento > /dev/null
	$(BIN)/ottermq serve --host $(HOST) --port $(PORT) --http-port $(HTTP_PORT) --data-dir $(DATA_DIR)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

pytest: $(VENV)/.installed-test
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
