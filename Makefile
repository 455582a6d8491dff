# Everything a fresh machine needs: `make test` and `make demo` create .venv, install a torch
# and a torchvision built for each other first (constraints.txt; nnU-Net's trainer lookup
# imports timm -> torchvision.ops, so nnUNetv2_train needs a loadable pair), then the project.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
REAL_PLANS ?= ../shared/real-plans
PYTEST_ARGS ?=
TEST_MARKERS ?= not real and not e2e

.PHONY: install lint test test-e2e test-real test-browser test-versions test-primus demo bench bench-gpu fixtures clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c constraints.txt torch torchvision
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $(STAMP)

# ruff (pyproject's rule set) on everything, mypy on the package (pyproject's [tool.mypy])
lint: $(STAMP)
	$(VENV)/bin/ruff check plancheck tests tools bench fixtures
	$(VENV)/bin/mypy

test: $(STAMP)
	$(PY) -m pytest -n 2 -m "$(TEST_MARKERS)" $(PYTEST_ARGS)

# The HTML pages in headless Chromium (Debian: apt-get install chromium); screenshots in .bench/screenshots/.
test-browser: $(STAMP)
	PLANCHECK_BROWSER=required $(PY) -m pytest -n 0 -m browser $(PYTEST_ARGS)

# The differential tests under the newest patch of every supported nnU-Net line (README,
# "Supported nnU-Net releases"): one venv per line in .venv-versions/, one shared torch.
test-versions:
	$(PYTHON) tools/test_versions.py $(PYTEST_ARGS)

# The Primus tests alone (timm -> torchvision.ops): .venv's torch and torchvision load together.
test-primus: $(STAMP)
	$(PY) -m pytest -n 2 -m primus $(PYTEST_ARGS)

# The real workflow: nnU-Net's planner on synthetic raw data, nnUNetv2_train on the CPU, the printed commands.
test-e2e: $(STAMP)
	$(PY) -m pytest -n 0 -m e2e -s $(PYTEST_ARGS)

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
	rm -rf $(VENV) .venv-primus .venv-versions .pytest_cache build *.egg-info
