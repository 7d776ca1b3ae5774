# clipdyn: `make demo` runs the offline demo end to end; `make test` runs the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_HUB ?= demo-hub
DEMO_ENV := HF_HUB_OFFLINE=1 HF_HUB_CACHE=$(abspath $(DEMO_HUB))
DEMO_CONFIG ?= config/demo.yaml
SNAKEMAKE_DEMO := $(BIN)/snakemake --cores 2 --resources gpu=1 --configfile $(DEMO_CONFIG)
# demo-online: the demo hub served over HTTP on 127.0.0.1, an empty HF cache, its own results
ONLINE ?= demo-online
ONLINE_RESULTS ?= results-demo-online

PLAN_ARGS ?=
.PHONY: plan venv test test-fast demo demo-hub demo-more-epochs demo-local-run demo-sources watch report lint clean-demo demo-online

$(BIN)/snakemake: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,slurm,lint]'
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

# The demo online: clipdyn.fixtures.hubserver serves demo-hub/ as a Hugging Face Hub on 127.0.0.1, the
# study runs with HF_ENDPOINT pointing at it and an empty HF cache (HF_HUB_OFFLINE unset), then
# two more epochs are published while it serves and the rerun runs only their jobs.
demo-online: demo-hub
	rm -rf $(ONLINE) $(ONLINE_RESULTS) && mkdir -p $(ONLINE)
	@set -e; \
	$(BIN)/python -m clipdyn.fixtures.hubserver --root $(DEMO_HUB) --port 0 --url-file $(ONLINE)/url \
	  --log $(ONLINE)/requests.jsonl > /dev/null & server=$$!; trap "kill $$server" EXIT; \
	for i in $$(seq 300); do test -s $(ONLINE)/url && break; sleep 0.1; done; \
	test -s $(ONLINE)/url || { echo "the local Hub did not start"; exit 1; }; \
	unset HF_HUB_OFFLINE; \
	export HF_ENDPOINT=$$(cat $(ONLINE)/url) HF_HUB_CACHE=$(abspath $(ONLINE))/hf-cache \
	  HF_HOME=$(abspath $(ONLINE))/hf-home NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost; \
	echo "== local Hub at $$HF_ENDPOINT; empty HF cache $$HF_HUB_CACHE"; \
	/usr/bin/env time -f "online run finished in %e s" $(SNAKEMAKE_DEMO) --config results=$(ONLINE_RESULTS); \
	echo "== publishing two more epochs while the Hub serves"; \
	$(BIN)/python -m clipdyn.demo more-epochs --hub $(DEMO_HUB) --n 2; \
	echo "== the rerun's jobs (only the new epochs'):"; \
	$(SNAKEMAKE_DEMO) --config results=$(ONLINE_RESULTS) -n --quiet rules; \
	/usr/bin/env time -f "rerun finished in %e s" $(SNAKEMAKE_DEMO) --config results=$(ONLINE_RESULTS); \
	$(SNAKEMAKE_DEMO) --config results=$(ONLINE_RESULTS) --report $(ONLINE_RESULTS)/report.html; \
	echo "== local Hub: $$(grep '"kind": "tree"' $(ONLINE)/requests.jsonl | grep -c '"repo_type": "model"') model \
	listings (one per model and run, none from jobs or --report), $$(grep -c '"kind": "cdn"' \
	$(ONLINE)/requests.jsonl) LFS downloads; requests in $(ONLINE)/requests.jsonl"

# what the study will download, hold and compute (results/plan.md); downloads nothing
plan: venv
	$(BIN)/python -m clipdyn plan $(PLAN_ARGS)

# A local training run followed while it trains: demo-S is trained into demo-runs/logs/demo-s (as
# open_clip writes it; epoch 2's file stays half-written for a while) and clipdyn.watch reruns the
# workflow every 15 s until training is done; each round evaluates only the epochs new since the last.
DEMO_RUN := demo-runs/logs/demo-s
demo-local-run: demo-hub
	rm -rf $(DEMO_RUN) demo-runs/watch.lock results-demo-local-run
	mkdir -p demo-runs
	@echo "== training demo-S into $(DEMO_RUN) (log: demo-runs/train.log); following it with clipdyn.watch"
	$(BIN)/python -m clipdyn.demo local-run --hub $(DEMO_HUB) --out $(DEMO_RUN) --epochs 4 --epoch-pause 40 \
	  --half-written 2 --half-pause 90 > demo-runs/train.log 2>&1 & pid=$$!; \
	  until test -e $(DEMO_RUN)/checkpoints/epoch_1.pt; do \
	    kill -0 $$pid 2>/dev/null || { cat demo-runs/train.log; exit 1; }; sleep 2; done; \
	  $(DEMO_ENV) $(BIN)/python -m clipdyn.watch --every 0.25 --until $(DEMO_RUN)/done --lock demo-runs/watch.lock \
	    -- $(SNAKEMAKE_DEMO:demo.yaml=demo-local-run.yaml); wait $$pid
	@echo "== figures: results-demo-local-run/figures/"

# The demo's other sources: demo-S's epochs as Hub revisions, the three models' last epochs as
# open_clip pretrained weights (a final-model zoo with a robust fit in the robustness view).
demo-sources: demo-hub
	@test -e $(DEMO_HUB)/models--clipdyn-demo--demo-s-final || { \
	  $(BIN)/python -m clipdyn.demo publish-revisions --hub $(DEMO_HUB) --run demo-s && \
	  $(BIN)/python -m clipdyn.demo publish-final --hub $(DEMO_HUB); }
	$(DEMO_ENV) $(SNAKEMAKE_DEMO:demo.yaml=demo-sources.yaml)
	@echo "== figures: results-demo-sources/figures/ (robustness.png: the zoo)"

# Keep a study current while training goes on: rerun every EVERY minutes (rounds never overlap;
# Ctrl-C stops cleanly). WATCH_CONFIG: your config, e.g. one with `local: logs/<run>`.
WATCH_CONFIG ?= config/config.yaml
EVERY ?= 10
CORES ?= all
WATCH_ARGS ?= --resources gpu=1
watch: venv
	$(BIN)/python -m clipdyn.watch --every $(EVERY) -- $(BIN)/snakemake --cores $(CORES) $(WATCH_ARGS) --configfile $(WATCH_CONFIG)

report: venv
	$(BIN)/snakemake --report results/report.html

SNAKEMAKE_FILES := Snakefile workflow/Snakefile $(wildcard workflow/rules/*.smk)

# what CI checks besides the tests: the Snakemake files' format (`$(BIN)/snakefmt $(SNAKEMAKE_FILES)`
# fixes it), Snakemake's own lint (it parses the workflow, which lists epochs: offline, against the
# demo's local hub), and the Python code (ruff, configured in pyproject.toml; `ruff check --fix`)
lint: demo-hub
	$(BIN)/snakefmt --check $(SNAKEMAKE_FILES)
	$(DEMO_ENV) $(BIN)/snakemake --lint --configfile config/demo.yaml
	$(BIN)/ruff check

clean-demo:
	rm -rf $(DEMO_HUB) results-demo results-demo-local-run results-demo-sources demo-runs $(ONLINE) $(ONLINE_RESULTS)
