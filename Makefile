# The two commands of the README: `make book` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The book needs only the `book` extra (the deep-learning chapter shows committed results without
# torch); the tests need everything. Each stamp re-installs only when pyproject.toml changes.
BOOK_STAMP := $(VENV)/.stamp-book
TEST_STAMP := $(VENV)/.stamp-test

.PHONY: venv book test lint bench clean help

help:
	@echo "make book   - set up .venv, execute the notebooks, build the HTML book in _build/html"
	@echo "make test   - set up .venv, run every test (unit, property, nbval, book, browser)"
	@echo "make bench  - run the speed benchmarks, writing benchmarks/results/*.json"

# $(call install,EXTRAS) with EXTRAS separated by spaces.
empty :=
comma := ,
define install
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(subst $(empty) $(empty),$(comma),$(1))]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
endef

$(BOOK_STAMP): pyproject.toml
	$(call install,book)
	@touch $@

$(TEST_STAMP): pyproject.toml
	$(call install,nn book dist lab dev)
	@touch $@ $(BOOK_STAMP)

venv: $(TEST_STAMP)

# Warnings are errors; notebooks are executed only when changed (execute_notebooks: cache).
BOOK_FLAGS ?= --warningiserror --keep-going --builder html

book: $(BOOK_STAMP)
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)

test: $(TEST_STAMP)
	$(BIN)/ruff check sdlib tests benchmarks
	$(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check sdlib tests benchmarks

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_krr.py
	$(BIN)/python benchmarks/bench_nn.py

clean:
	rm -rf _build
