# One-command set-up on a fresh machine (Python 3.11, nothing installed).
# The CPU torch wheel is installed first so that no CUDA build is pulled in by the range in pyproject.toml.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# One thread by default: on the shared 2-core box torch with 2 threads was measured up to 8x slower.
THREADS ?= 1

.PHONY: setup test test-slow demo generate clean
PROMPT ?= a red circle to the left of a blue square
OUT ?= out/

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test,parse]'
	touch $@

test: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -q

test-slow: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -m slow

# The main job: prompt -> scene graph -> image with the bundled offline shapes model.
generate: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/scenegraph-diff generate "$(PROMPT)" --out $(OUT)

demo: setup
	OMP_NUM_THREADS=$(THREADS) $(BIN)/scenegraph-diff demo --out out/demo

clean:
	rm -rf $(VENV) out build *.egg-info
