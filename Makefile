# The companion: `make figures` regenerates every figure, `make test` runs the tests.
# Both create .venv and install what is missing first.

PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch goes in first, pinned, so that `pip install -e .` never pulls another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PROFILE    ?= cpu
ARGS       ?=
NOTEBOOKS  := $(wildcard notebooks/*.ipynb)

.PHONY: venv test figures clean

venv: $(VENV)/.installed

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-runs only when pyproject.toml changes (or the stamp is missing).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[test]"
	touch $@

# Unit tests plus every notebook at the smoke profile (nbval-lax: a notebook fails on errors,
# and its claims are asserts).
# Smoke runs keep their own store and figures, so they never overwrite a real run's.
test: venv
	REPRO_PROFILE=smoke REPRO_STORE=$(CURDIR)/build/smoke/store REPRO_FIGURES=$(CURDIR)/build/smoke/figures $(PY) -m pytest -q tests $(if $(NOTEBOOKS),--nbval-lax $(NOTEBOOKS))

# e.g. make figures PROFILE=smoke ARGS="--override seeds=200"
figures: venv
	$(PY) paper_figures.py --all --profile $(PROFILE) $(ARGS)

clean:
	rm -rf build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find notebooks -name .ipynb_checkpoints -type d -prune -exec rm -rf {} + 2>/dev/null || true
