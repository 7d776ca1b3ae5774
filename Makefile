# clipdyn: `make demo` runs the offline demo end to end; `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HUB ?= demo-hub
DEMO_ENV := HF_HUB_OFFLINE=1 HF_HUB_CACHE=$(abspath $(DEMO_HUB))
SNAKEMAKE_DEMO := $(BIN)/snakemake --cores 2 --resources gpu=1 --configfile config/demo.yaml

PLAN_ARGS ?=
.PHONY: plan venv test test-fast demo demo-hub demo-more-epochs report lint clean-demo

$(BIN)/snakemake: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,slurm]'
	touch $@

venv: $(BIN)/snakemake

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q tests/unit

demo-hub: venv
	@test -e $(DEMO_HUB)/demo-manifest.json || { \
	  echo "== building the demo's local Hugging Face hub in $(DEMO_HUB)/ (training tiny CLIPs)"; \
	  /usr/bin/env time -f "demo hub built in %e s" $(BIN)/python -m clipdyn.demo build --hub $(DEMO_HUB); }

demo: demo-hub
	@echo "== running the workflow offline on the demo hub"
	$(DEMO_ENV) /usr/bin/env time -f "workflow finished in %e s" $(SNAKEMAKE_DEMO)
	$(DEMO_ENV) $(SNAKEMAKE_DEMO) --report results-demo/report.html
	@echo "== figures: results-demo/figures/   table: results-demo/figures/table1.md   report: results-demo/report.html"

demo-more-epochs: demo-hub
	$(BIN)/python -m clipdyn.demo more-epochs --hub $(DEMO_HUB) --n 2
	$(DEMO_ENV) $(SNAKEMAKE_DEMO)
	$(DEMO_ENV) $(SNAKEMAKE_DEMO) --report results-demo/report.html

# what the study will download, hold and compute (results/plan.md); downloads nothing
plan: venv
	$(BIN)/python -m clipdyn plan $(PLAN_ARGS)

report: venv
	$(BIN)/snakemake --report results/report.html

# linting parses the Snakefile, which lists epochs: offline, it needs the demo's local hub
lint: demo-hub
	$(DEMO_ENV) $(BIN)/snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf $(DEMO_HUB) results-demo
