# One-command set-up on a fresh machine (Python 3.11, nothing installed).
# The CPU torch wheel is installed first so that no CUDA build is pulled in by the range in pyproject.toml.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Exact versions of every dependency (pip constraints; `make lock` refreshes it). PIP_CONSTRAINT also
# reaches pip's isolated build environment, so the build back-end is pinned too.
LOCK ?= requirements.lock
export PIP_CONSTRAINT := $(abspath $(LOCK))
# One thread by default: on the shared 2-core box torch with 2 threads was measured up to 8x slower.
THREADS ?= 1

.PHONY: setup test test-slow demo generate clean lock
PROMPT ?= a red circle to the left of a blue square
OUT ?= out/

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip
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

# Re-resolve every dependency from pyproject.toml's ranges in a throw-away venv and rewrite the lock.
lock:
	rm -rf .lock-venv && $(PY) -m venv .lock-venv
	PIP_CONSTRAINT= .lock-venv/bin/python -m pip install -q --upgrade pip setuptools
	PIP_CONSTRAINT= .lock-venv/bin/python -m pip install -q $(TORCH)
	PIP_CONSTRAINT= .lock-venv/bin/python -m pip install -q -e '.[test,parse]'
	{ sed -n '1,3p' $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; \
	  echo '# Installer and build back-end (pip applies PIP_CONSTRAINT to build isolation too).'; \
	  .lock-venv/bin/python -m pip freeze --all | grep -E '^(pip|setuptools)=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .lock-venv

clean:
	rm -rf $(VENV) out build *.egg-info
