# birdgrab developer entry points. Every target installs what it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := .demo

.PHONY: install test test-faults lint bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -n 2 -m "not faults" tests

test-faults: install
	$(BIN)/python -m pytest -n 2 -m faults tests

lint: install
	$(BIN)/ruff check birdgrab tests bench scripts
	$(BIN)/ruff format --check birdgrab tests bench scripts

bench: install
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

# The whole pipeline, offline, against the bundled sandbox archive on a free loopback port.
demo: install
	BIN=$(BIN) DEMO=$(DEMO) bash scripts/demo.sh

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
