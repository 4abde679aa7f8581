# instrument-classifier — `make run` (render, prepare, train, evaluate) and `make test`.
# Everything installs into .venv/ at the repo root; system packages come from apt (Debian, as root).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/instrument-classifier
STAMP := $(VENV)/.installed

# FluidSynth and General MIDI sample libraries to render MusicNet scores; Chromium for the browser test.
APT_PACKAGES := fluidsynth libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont-small timgm6mb-soundfont csound-soundfont \
                opl3-soundfont chromium

CORPUS := corpora/default
DATASET := outputs/default/dataset
RUN_DIR := outputs/default
EPOCHS ?= 12

.PHONY: run test install apt models bench clean check-copies fix-copies lint

install: $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# torch is pinned to the CPU wheel on this disk (torch==2.13.0); GPU users: install
# the CUDA build of torch into .venv first (https://pytorch.org/get-started/locally/).
$(STAMP): pyproject.toml | apt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Render the shipped MusicNet label excerpts, build the dataset, train both models, evaluate on test.
run: $(STAMP)
	$(CLI) synth --out $(CORPUS)
	$(CLI) prepare --data-dir $(CORPUS) --output $(DATASET)
	$(CLI) train --model_type cnn --dataset_path $(DATASET) --output_dir $(RUN_DIR)/cnn \
	  --num_train_epochs $(EPOCHS) --overwrite_output_dir
	$(CLI) train --model_type transformer --dataset_path $(DATASET) --output_dir $(RUN_DIR)/transformer \
	  --num_train_epochs $(EPOCHS) --overwrite_output_dir
	$(CLI) evaluate --model $(RUN_DIR)/cnn --model $(RUN_DIR)/transformer --dataset $(DATASET) \
	  --split test --output $(RUN_DIR)/evaluation

test: $(STAMP)
	$(PY) -m pytest -q

# The code the self-contained model files repeat ("# Copied from instrument_classifier.modeling...") and the code
# files of the bundled model folders (instrument_classifier/pretrained/*/) against their sources; tests run the check.
check-copies: $(STAMP)
	$(PY) scripts/check_copies.py

# ruff with pyproject.toml's settings (lines up to 119 characters); tests/test_lint.py runs it too.
lint: $(STAMP)
	$(PY) -m ruff check .

# Rewrite the copies from their sources (after editing instrument_classifier/modeling/; the weights stay).
fix-copies: $(STAMP)
	$(PY) scripts/check_copies.py --fix

# The generalisation recipe: several sample libraries, one held out; writes instrument_classifier/pretrained/.
# MUSICNET: your MusicNet folder (musicnet.tar.gz unpacked; only train_labels/ and test_labels/ are read).
# Then the musicnn classifier on the same renders (instrument_classifier/recipes/musicnn.py) -> pretrained/musicnn.
# VPO: your clone of eodowd/VirtualPlayingOrchestra (default corpora/recipe/libraries/VirtualPlayingOrchestra);
# Then the YAMNet and EfficientAT classifiers and the blend of the three -> pretrained/yamnet,
# pretrained/efficientat, pretrained/musicnn-yamnet-efficientat (the default).
# MUSICNN_WEIGHTS: scripts/convert_musicnn.py's output (default musicnn_mtt.safetensors); YAMNET_WEIGHTS:
# scripts/convert_yamnet.py's (default yamnet_audioset.safetensors); EFFICIENTAT_WEIGHTS:
# scripts/convert_efficientat.py's (default efficientat_mn04.safetensors); REAL_DEV: labelled real clips to tune the
# thresholds and the blend on (default ../shared/real-dev/manifest.csv; without it they are not tuned).
MUSICNET ?= ../shared/musicnet
VPO ?=
MUSICNN_WEIGHTS ?=
YAMNET_WEIGHTS ?=
EFFICIENTAT_WEIGHTS ?=
REAL_DEV ?=
models: $(STAMP)
	$(PY) -m instrument_classifier.recipe --musicnet $(MUSICNET) --workdir corpora/recipe --output instrument_classifier/pretrained
	$(PY) -m instrument_classifier.recipe_musicnn --musicnet $(MUSICNET) --workdir corpora/recipe --output instrument_classifier/pretrained \
	  $(if $(VPO),--sampler-library $(VPO)) $(if $(MUSICNN_WEIGHTS),--musicnn-weights $(MUSICNN_WEIGHTS)) \
	  $(if $(YAMNET_WEIGHTS),--yamnet-weights $(YAMNET_WEIGHTS)) \
	  $(if $(EFFICIENTAT_WEIGHTS),--efficientat-weights $(EFFICIENTAT_WEIGHTS)) $(if $(REAL_DEV),--real-dev $(REAL_DEV))

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf corpora outputs .pytest_cache
