# Build and test the book "Bilevel Methods for Image Reconstruction".
#
#   make book    execute every chapter and write the HTML site to _build/html
#   make test    run the test suite (it builds the book too, so every chapter runs)
#   make test-lib        only the library's tests (tests/lib, no book build; about 2 min)
#   make lint    ruff: format check and lint of the code, lint of the chapters' code cells (in make test)
#   make bench   print the speed figures of benchmarks/ (not part of the tests)
#   make bench-peers     bilevel_lib against a JAX peer (all cores, then one core each), with verdicts (own venv .venv-peers)
#   make clean   remove build outputs and caches (keeps .venv); distclean removes .venv too
#   make student         the student edition, without solutions, in _build/student/html
#   make browser-check   only the Chromium checks of the pages and the live widget (in make test)
#   make binder-check    a fresh venv from the Binder files runs every chapter (not in make test)
#   make notebooks       the clean and student notebooks (and zips) again, from the last make book
#   make pdf             the whole book as one PDF again (Chromium), from the last make book / make student
#
# Needs only Python 3.11 and make: the first run creates .venv from requirements.txt
# and installs bilevel_lib into it in editable mode. The venv is rebuilt from scratch
# whenever requirements.txt, requirements-dev.txt or pyproject.toml change (the stamp file below).

PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
# --all: re-read (so re-execute) every page, not only the ones changed since the last build.
BUILD_FLAGS ?= --all -W -n --keep-going

# Quiet ipykernel's debugger warning about frozen modules (printed by every kernel).
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv book test test-lib lint bench bench-peers clean distclean student browser-check binder-check \
        notebooks pdf

help:
	@sed -n '3,15p' Makefile

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; run: make PYTHON=python3.11 ...")'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(VPY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

book: $(STAMP)
	$(VPY) $(VENV)/bin/jupyter-book build . $(BUILD_FLAGS)

test: $(STAMP)
	$(VPY) -m pytest

lint: $(STAMP)
	$(VPY) scripts/lint.py

# The library alone: tests/lib (no book build, no browser).
test-lib: $(STAMP)
	$(VPY) -m pytest tests/lib

# The book with the exercises but without their solutions (scripts/build_student.py).
student: $(STAMP)
	$(VPY) scripts/build_student.py

# Every build also writes the clean notebooks, the student notebooks, a zip of each (notebooks/ of
# the site) and, with Chromium, the book as one PDF (pdf/): scripts/sphinx_downloads.py. These two
# make them again from the last build (running `make book` first if there is none).
notebooks: $(STAMP)
	@test -f _build/.doctrees/environment.pickle || $(MAKE) book
	$(VPY) scripts/export_notebooks.py --build _build

pdf: $(STAMP)
	@test -f _build/html/index.html || $(MAKE) book
	$(VPY) scripts/print_pdf.py --html _build/html
	@if [ -f _build/student/html/index.html ]; then $(VPY) scripts/print_pdf.py --html _build/student/html; fi

# Part of `make test`, on its own: headless Chromium on every page (screenshots in
# _build/screenshots/) and the live widget in Voila.
browser-check: $(STAMP)
	$(VPY) -m pytest tests/book/test_browser.py

# Not part of `make test` (3-15 min): a fresh venv made only from requirements.txt, runtime.txt and
# postBuild, as Binder would, runs every chapter (tests/book/test_binder.py). .ci/run runs it after the tests.
binder-check: $(STAMP)
	BILEVEL_BINDER_CHECK=1 $(VPY) -m pytest tests/book/test_binder.py -k fresh_environment

bench: $(STAMP)
	$(VPY) benchmarks/bench_core.py
	$(VPY) benchmarks/bench_widgets.py
	$(VPY) benchmarks/bench_hypergrad.py
	$(VPY) benchmarks/bench_training.py
	$(VPY) benchmarks/bench_unrolling.py
	$(VPY) benchmarks/bench_single_level.py --quick
	$(VPY) benchmarks/bench_frontier.py

# The JAX peer benchmark (issue 18) in an environment of its own: the book's pinned requirements plus
# benchmarks/peers/requirements.txt (jax, jaxlib), so JAX never enters requirements.txt or .venv.
PEERS_VENV  ?= .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.stamp-install

$(PEERS_STAMP): requirements.txt benchmarks/peers/requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; run: make PYTHON=python3.11 ...")'
	rm -rf $(PEERS_VENV)
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet -r requirements.txt -r benchmarks/peers/requirements.txt
	$(PEERS_VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

bench-peers: $(PEERS_STAMP)
	$(PEERS_VENV)/bin/python benchmarks/peers/bench_peers.py
	$(PEERS_VENV)/bin/python benchmarks/peers/bench_peers.py --one-core

clean:
	rm -rf _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
