# Two entry points for a fresh machine (see README.md):
#   make demo   set up .venv, then run the main job on built-in synthetic data
#   make test   set up .venv, then lint and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch (export path only) is pinned to 2.13.0. pip takes a local CPU wheel where one is on its
# find-links path; elsewhere pass e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# to get the CPU build instead of the default (CUDA on Linux) one.
TORCH_PIP_ARGS ?=
DEMO_DIR ?= runs/demo
HAND_DIR ?= runs/demo_hand
DEMO_NUM ?= 2000
DEMO_SIZE ?= 256

.PHONY: setup demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0" $(TORCH_PIP_ARGS)
	$(PY) -m pip install --quiet -e ".[train,export,dev,tfds]"
	touch $@

setup: $(VENV)/.installed

# Render synthetic data (once), validate it, preview augmented samples, train the body model
# (configs/demo.py) and the hand model on the same data (configs/demo_hand.py), about
# 15 minutes on 2 CPU cores from a fresh clone (re-running resumes or just reports); evaluate the pair (hands:
# body model alone vs body + hand stage), draw a held-out image, export both models to ONNX
# and print the onnxruntime-vs-JAX parity; the last lines say what was made, where, the figures
# and the next command to try (signlang_jax.demo_report).
demo: setup
	mkdir -p $(DEMO_DIR) && date +%s > $(DEMO_DIR)/.demo_start
	test -d $(DEMO_DIR)/data/labels || $(PY) -m signlang_jax.synth --out $(DEMO_DIR)/data \
		--num $(DEMO_NUM) --seed 0 --size $(DEMO_SIZE)
	$(PY) -m signlang_jax.data.validate --data-root $(DEMO_DIR)/data
	$(PY) -m signlang_jax.data.preview --data-root $(DEMO_DIR)/data --out $(DEMO_DIR)/preview.png \
		--size 128
	$(PY) -m signlang_jax.main --config configs/demo.py --workdir $(DEMO_DIR) \
		--config.data.root=$(DEMO_DIR)/data
	$(PY) -m signlang_jax.main --config configs/demo_hand.py --workdir $(HAND_DIR) \
		--config.data.root=$(DEMO_DIR)/data
	$(PY) -m signlang_jax.evaluate --checkpoint $(DEMO_DIR) --hand-checkpoint $(HAND_DIR) \
		--out $(DEMO_DIR)/eval
	test -d $(DEMO_DIR)/heldout/images || $(PY) -m signlang_jax.synth --out $(DEMO_DIR)/heldout \
		--num 1 --seed 1 --size $(DEMO_SIZE)
	$(PY) -m signlang_jax.infer_image --checkpoint $(DEMO_DIR) --hand-checkpoint $(HAND_DIR) \
		--image $(DEMO_DIR)/heldout/images/000000.jpg --out $(DEMO_DIR)/overlay.jpg
	$(PY) -m interop.to_onnx --checkpoint $(DEMO_DIR):best --output $(DEMO_DIR)/model.onnx \
		--with-keypoints
	$(PY) -m interop.to_onnx --checkpoint $(HAND_DIR):best --output $(DEMO_DIR)/hand.onnx \
		--with-keypoints
	$(PY) -m signlang_jax.demo_report --demo $(DEMO_DIR) --hand $(HAND_DIR)

lint: setup
	$(PY) -m ruff check .

# Two pytest workers (pytest-xdist), one test file each at a time: module fixtures stay shared
# within a file, and compilation on one core overlaps execution on the other (on the 2-core CI
# machine the suite takes ~11 min instead of ~16).
PYTEST_WORKERS ?= 2
test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

# The performance suite (writes docs/PERFORMANCE.md), then the generator and the data formats.
bench: setup
	$(PY) benchmarks/bench_suite.py
	$(PY) benchmarks/bench_synth.py
	$(PY) benchmarks/bench_formats.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .hypothesis
