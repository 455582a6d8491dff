# Everything a fresh machine needs: `make test` and `make demo` create .venv, install the
# CPU build of torch first (so pip never pulls a multi-GB CUDA build), then the project.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
REAL_PLANS ?= ../shared/real-plans
PYTEST_ARGS ?=
TEST_MARKERS ?= not real and not primus

.PHONY: install test test-real test-browser test-versions test-primus demo bench bench-gpu fixtures clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 -m "$(TEST_MARKERS)" $(PYTEST_ARGS)

# The HTML pages in headless Chromium (Debian: apt-get install chromium); screenshots in .bench/screenshots/.
test-browser: $(STAMP)
	PLANCHECK_BROWSER=required $(PY) -m pytest -n 0 -m browser $(PYTEST_ARGS)

# The differential tests under the newest patch of every supported nnU-Net line (README,
# "Supported nnU-Net releases"): one venv per line in .venv-versions/, one shared torch.
test-versions:
	$(PYTHON) tools/test_versions.py $(PYTEST_ARGS)

# Primus (timm -> torchvision.ops) needs a torchvision built for the installed torch. PyPI
# has no CPU build of torchvision, so this venv takes PyPI's CUDA build of the same torch
# (it runs on a CPU-only machine): ~4.8 GB, kept apart from .venv (README, "Primus").
PRIMUS_VENV  := .venv-primus
PRIMUS_STAMP := $(PRIMUS_VENV)/.installed
TORCHVISION  := 0.28.0

$(PRIMUS_STAMP): pyproject.toml constraints.txt
	test -x $(PRIMUS_VENV)/bin/python || $(PYTHON) -m venv $(PRIMUS_VENV)
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(PRIMUS_VENV)/bin/python -m pip --disable-pip-version-check -q \
		install torch==$$(sed -n 's/^torch==//p' constraints.txt) torchvision==$(TORCHVISION)
	PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= $(PRIMUS_VENV)/bin/python -m pip --disable-pip-version-check -q \
		install -c constraints.txt -e '.[test]'
	touch $(PRIMUS_STAMP)

test-primus: $(PRIMUS_STAMP)
	$(PRIMUS_VENV)/bin/python -m pytest -n 2 -m primus $(PYTEST_ARGS)

test-real: $(STAMP)
	PLANCHECK_REAL_PLANS=$(REAL_PLANS) $(PY) -m pytest -n 2 -m real $(PYTEST_ARGS)

demo: $(STAMP)
	@echo '$$ plancheck check fixtures/plans/Dataset901_CTIsotropic/nnUNetPlans.json fixtures/plans/Dataset902_CTAnisotropic/nnUNetPlans.json --problems-only'
	@$(VENV)/bin/plancheck check fixtures/plans/Dataset901_CTIsotropic/nnUNetPlans.json \
		fixtures/plans/Dataset902_CTAnisotropic/nnUNetPlans.json --problems-only; \
		echo "(exit code $$?: 1 means nnU-Net would refuse these weights)"

bench: $(STAMP)
	$(PY) bench/bench.py

# needs a CUDA GPU and a CUDA build of torch in .venv (make install pins the CPU build:
# pip install torch==2.13.0 from the CUDA index first); writes bench/RESULTS.md
bench-gpu: $(STAMP)
	$(PY) bench/bench_gpu.py

fixtures: $(STAMP)
	$(PY) fixtures/generate.py

clean:
	rm -rf $(VENV) $(PRIMUS_VENV) .venv-versions .pytest_cache build *.egg-info
