# envkit: `make demo` builds and validates the CPU demo matrix; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENVKIT := $(BIN)/envkit
DEMO_MATRIX ?= images/cpu-demo.yaml
STATE ?= $(or $(ENVKIT_STATE_DIR),/tmp/envkit)
# The wheelhouse and CA bundle come from the environment when it names them (see README).
WHEELHOUSE ?= $(PIP_FIND_LINKS)
CA_BUNDLE ?= $(PIP_CERT)
BUILD_FLAGS := $(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE)) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

.PHONY: demo test venv test-deps engine base-image slurm slurm-stop unit fuzz docker-tier podman-tier lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# The distribution was called `envkit` before it became envkit-gpu; an old install would shadow it.
	$(BIN)/pip uninstall --quiet --yes envkit 2>/dev/null || true
	$(BIN)/pip install --quiet -e '.[dev]'
	@# The probe's own tests run torch on the host: the wheelhouse's torch for this Python, when there
	@# is one (named as a file, so pip cannot prefer a multi-GB CUDA build from the index instead).
	@tag=$$($(BIN)/python -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	wheel=$$(ls $(WHEELHOUSE)/torch-*-$$tag-*.whl 2>/dev/null | head -n1); \
	if [ -n "$(WHEELHOUSE)" ] && [ -n "$$wheel" ]; then \
	  $(BIN)/pip install --quiet --find-links $(WHEELHOUSE) "$$wheel"; \
	else echo "venv: no torch wheel for $$tag in WHEELHOUSE; probe tests that need torch will skip"; fi
	touch $@

venv: $(VENV)/.installed

engine:
	bash scripts/ensure-engine.sh

base-image: engine
	bash scripts/make-base-image.sh

# A single-node Slurm on localhost with fake h100/a100 GPUs for tests/slurm (root; see the script).
slurm:
	bash scripts/ensure-slurm.sh

slurm-stop:
	bash scripts/ensure-slurm.sh stop

test-deps: venv engine base-image slurm
	bash scripts/install-test-deps.sh
	bash scripts/ensure-podman.sh

demo: venv base-image
	$(ENVKIT) plan $(DEMO_MATRIX)
	$(ENVKIT) build $(DEMO_MATRIX) $(BUILD_FLAGS) --report $(STATE)/demo-build.json
	$(ENVKIT) validate --matrix $(DEMO_MATRIX) --profile quick --out-dir $(STATE)/demo-reports
	$(ENVKIT) report $(STATE)/demo-reports --html $(STATE)/demo-report.html
	@echo "demo: reports in $(STATE)/demo-reports, HTML page $(STATE)/demo-report.html"

test: test-deps
	$(BIN)/pytest tests -q --durations=25

unit: venv
	$(BIN)/pytest tests/unit -q

# Every generated hostile document (the default `quick` profile runs a quarter of them).
fuzz: venv
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest tests/unit/test_hostile_documents.py -q
podman-tier: test-deps
	$(BIN)/pytest tests/podman -q

lint: venv
	$(BIN)/ruff check envkit tests scripts benchmarks
	$(BIN)/ruff format --check envkit tests scripts benchmarks
	$(BIN)/mypy envkit

bench: venv base-image
	$(BIN)/python benchmarks/run.py $(BUILD_FLAGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
