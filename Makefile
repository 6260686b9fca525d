# The two commands of the README: `make book` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= nn,book,dev

.PHONY: venv book test lint bench clean help

help:
	@echo "make book   - set up .venv, execute the notebooks, build the HTML book in _build/html"
	@echo "make test   - set up .venv, run every test (unit, property, nbval, book, browser)"
	@echo "make bench  - run the speed benchmarks, writing benchmarks/results/*.json"

# Re-install only when the package metadata changes; pip is idempotent anyway.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# Warnings are errors; notebooks are executed only when changed (execute_notebooks: cache).
BOOK_FLAGS ?= --warningiserror --keep-going --builder html

book: venv
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)

test: venv
	$(BIN)/ruff check sdlib tests benchmarks
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check sdlib tests benchmarks

bench: venv
	$(BIN)/python benchmarks/bench_krr.py
	$(BIN)/python benchmarks/bench_nn.py

clean:
	rm -rf _build
