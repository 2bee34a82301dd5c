# The companion: `make figures` regenerates every figure and the claims report, `make test` runs the tests,
# `make lab` opens JupyterLab on the notebooks, `make publish` makes a cpu run the committed one. Each creates
# .venv and installs what is missing first.

PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
PY         := $(VENV)/bin/python
# torch goes in first, pinned, and the rest is installed under the same pins as constraints, so that pip never
# pulls another build. PyPI's Linux wheels are the CUDA build (about 6 GB installed); on a machine without a GPU,
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes the same versions' CPU-only wheels from PyTorch's index.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
PROFILE    ?= cpu
ARGS       ?=
NOTEBOOKS  := $(wildcard notebooks/*.ipynb)
# Extra arguments of `jupyter lab`, e.g. LAB_ARGS="--no-browser --port 8899".
LAB_ARGS   ?=
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/reprocompanion.json5

.PHONY: venv test figures publish lab clean

venv: $(VENV)/.installed $(LAB_SETTINGS)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-runs only when pyproject.toml changes (or the stamp is missing).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_SPEC)
	printf '%s\n' $(TORCH_SPEC) > $(VENV)/torch-constraints.txt
	$(PY) -m pip install -c $(VENV)/torch-constraints.txt -e ".[test,lab]"
	touch $@

# JupyterLab settings for this venv only (jupytext's default viewer: a .py pair opens as a notebook).
$(LAB_SETTINGS): jupyter/lab-overrides.json5 | $(VENV)/.installed
	mkdir -p $(@D)
	cp $< $@

# Unit tests plus every notebook at the smoke profile (nbval-lax: a notebook fails on errors; its claims are
# computed and shown, not judged).
# Smoke runs keep their own store and figures, so they never overwrite a real run's.
test: venv
	REPRO_PROFILE=smoke REPRO_STORE=$(CURDIR)/build/smoke/store REPRO_FIGURES=$(CURDIR)/build/smoke/figures $(PY) -m pytest -q --durations=15 tests $(if $(NOTEBOOKS),--nbval-lax $(NOTEBOOKS))

# e.g. make figures PROFILE=smoke ARGS="--override seeds=200"
figures: venv
	$(PY) paper_figures.py --all --profile $(PROFILE) $(ARGS)

# A full cpu run, then made the committed one: the executed notebooks replace notebooks/*.ipynb (outputs), the
# gallery and the claims report go to results/, and the README's results block is rewritten. Only after a run
# that exits 0 (every notebook ran, every verdict as recorded).
publish: venv
	$(PY) paper_figures.py --all --profile cpu --publish $(ARGS)

# JupyterLab opened on notebooks/, rooted at the checkout so that the notebooks' links to ../notes/ and
# ../replications/ open; its kernels run at PROFILE (cpu unless given, e.g. `make lab PROFILE=smoke`).
lab: venv
	REPRO_PROFILE=$(PROFILE) $(VENV)/bin/jupyter lab --ServerApp.root_dir=$(CURDIR) \
		--LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

clean:
	rm -rf build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find notebooks -name .ipynb_checkpoints -type d -prune -exec rm -rf {} + 2>/dev/null || true
