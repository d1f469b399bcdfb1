# One place to run things. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen
# The project folder whose conf/, data/ and database `make build` and `make serve` use.
PROJECT_DIR ?= $(CURDIR)
DATABASE := sqlite:///$(abspath $(PROJECT_DIR))/data/09_serving/serving.db
# Privacy: no usage data leaves the machine (kedro-telemetry, DVC analytics, ...).
export DO_NOT_TRACK := 1
export BENTOML_DO_NOT_TRACK := True
export KEDRO_DISABLE_TELEMETRY := 1

.PHONY: image-pipeline image-pipeline-spark image-service images bench-images manifests docker-engine local-base
.PHONY: monitor simulate-traffic simulate-drift simulate-outcomes load-outcomes trigger dashboards monitoring-demo bench-monitoring
.PHONY: batch-score bench-batch-scoring object-store bench-scale
.PHONY: help bootstrap dvc-stages bench-footprint data data-home-credit data-drift run test test-fast lint format ui viz repro dvc-push clean bench-processing bench-training build serve dashboard token purge-events bench-serving bench-dashboard

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

bootstrap: ## Install uv if missing, then the locked environment (.venv)
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

data: bootstrap ## Generate the synthetic raw tables if data/01_raw holds no data file
	@if [ -z "$$(find data/01_raw -type f ! -name '.gitkeep' -print -quit 2>/dev/null)" ]; then \
		$(RUN) credit-scoring generate-data; \
	else echo "data/01_raw holds data: not generating synthetic tables"; fi

data-home-credit: bootstrap ## Regenerate the raw tables at Home Credit size (307,511 applications)
	$(RUN) credit-scoring generate-data --n-applications 307511

data-drift: bootstrap ## Write a drifted population to data/01_raw/drifted/ (for monitoring work)
	$(RUN) credit-scoring generate-data --drift --seed 7 --output-dir data/01_raw/drifted

run: bootstrap data ## Set up and run the whole Kedro pipeline on the embedded defaults
	$(RUN) kedro run

test: bootstrap lint ## Set up, lint, and run the whole test suite (the 30 slowest listed)
	$(RUN) pytest --durations=30

test-fast: bootstrap ## Unit tests only: no pipeline run, no server (on up to 4 cores)
	$(RUN) pytest -m "not integration" -n auto --maxprocesses 4

lint: bootstrap ## ruff (lint + format check), mypy on src/, import contracts (serving never imports training)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports

format: bootstrap ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

build: bootstrap ## Import the MLflow champion into BentoML and build the bento (after make run)
	UV="$(UV)" $(RUN) credit-scoring build --project $(PROJECT_DIR)

serve: bootstrap ## Serve the latest bento on 127.0.0.1:3000 with the project's database (after make build)
	CREDIT_SCORING_DATABASE_URL="$${CREDIT_SCORING_DATABASE_URL:-$(DATABASE)}" \
		$(RUN) bentoml serve $${BENTO:-credit_scoring:latest} --host 127.0.0.1 --port $${PORT:-3000}

dashboard: bootstrap ## The advisor dashboard on 127.0.0.1:8501, on the API at SERVICE_URL (after make serve)
	CREDIT_SCORING_DASHBOARD_API_URL="$${CREDIT_SCORING_DASHBOARD_API_URL:-$(SERVICE_URL)}" \
		$(RUN) streamlit run src/credit_scoring/dashboard/app.py --server.port $${DASHBOARD_PORT:-8501}

token: bootstrap ## Print a short-lived development token: make token ROLE=advisor SUB=alice
	@test -n "$(ROLE)" -a -n "$(SUB)" || { echo "usage: make token ROLE=advisor|scoring SUB=<who>" >&2; exit 2; }
	@$(RUN) credit-scoring token --role "$(ROLE)" --sub "$(SUB)"

purge-events: bootstrap ## Delete prediction events (and access audit records) past their retention
	$(RUN) credit-scoring purge-events

ui: bootstrap ## Open the MLflow UI on the embedded store (127.0.0.1:5000)
	$(RUN) mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} --host 127.0.0.1 --port 5000

viz: bootstrap ## Open kedro-viz on 127.0.0.1:4141
	$(RUN) kedro viz run --host 127.0.0.1 --port 4141

dvc-stages: bootstrap ## Rewrite dvc.yaml from conf/ (the stages' data, parameters and outputs)
	$(RUN) credit-scoring dvc-stages $(if $(KEDRO_ENV),--env $(KEDRO_ENV))

repro: bootstrap ## Reproduce the DVC stages (generate -> ingestion -> processing -> training)
	$(RUN) dvc repro

dvc-push: bootstrap ## Push DVC-tracked data to the default remote
	$(RUN) dvc push

clean: ## Remove generated data (keeps the folder layout) and caches
	find data -type f ! -name .gitkeep -delete
	rm -rf .pytest_cache .ruff_cache .mypy_cache logs

bench-processing: bootstrap ## Time ingestion + processing at Home Credit size (bench/results/)
	$(RUN) python bench/processing_home_credit.py

bench-scale: bootstrap ## pandas vs Spark local[1]/local[2] at 300k and 3M applications (hours; SIZES="..." to change)
	$(RUN) python bench/scale.py --sizes $${SIZES:-300000 3000000}

bench-training: bootstrap ## Model quality and Kedro/MLflow overhead at Home Credit size (~25 min)
	$(RUN) python bench/training_home_credit.py

bench-footprint: bootstrap ## The bento's installed size and cold start vs the full environment (after make build)
	UV="$(UV)" $(RUN) python bench/bento_footprint.py

bench-dashboard: bootstrap ## Open-client-to-explanation time in Chromium, p95 vs the API (after make build)
	$(RUN) python bench/dashboard.py

bench-serving: bootstrap ## /predict vs mlflow models serve vs a bare ASGI app, with wrk (~5 min)
	@command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 1; }
	$(RUN) python bench/serving.py

# --- object storage (S3) ---------------------------------------------------------------
object-store: bootstrap ## An S3 store (SeaweedFS) on 127.0.0.1:8333 in the foreground; prints the settings to export
	$(RUN) credit-scoring object-store serve --port $${OBJECT_STORE_PORT:-8333} \
		$(if $(OBJECT_STORE_DIR),--data-dir $(OBJECT_STORE_DIR))

# --- monitoring -------------------------------------------------------------------------
SERVICE_URL ?= http://127.0.0.1:3000
REQUESTS ?= 2000

monitor: bootstrap ## Drift + labelled performance of the served model (kedro pipeline `monitoring`)
	$(RUN) kedro run --pipelines monitoring

simulate-traffic: bootstrap ## Send REQUESTS normal applications to the running service (SERVICE_URL)
	$(RUN) credit-scoring simulate traffic --url $(SERVICE_URL) --requests $(REQUESTS)

simulate-drift: bootstrap ## Send REQUESTS applications of the drifted population to the running service
	$(RUN) credit-scoring simulate traffic --url $(SERVICE_URL) --requests $(REQUESTS) --drift

simulate-outcomes: bootstrap ## Write and load the true outcomes of the simulated requests (delayed labels)
	$(RUN) credit-scoring simulate outcomes

load-outcomes: bootstrap ## Load an outcome file: make load-outcomes FILE=outcomes.csv
	@test -n "$(FILE)" || { echo "usage: make load-outcomes FILE=path/to/outcomes.csv"; exit 2; }
	$(RUN) credit-scoring load-outcomes $(FILE)

trigger: bootstrap ## Run the retrain trigger on 127.0.0.1:8095 (Alertmanager's webhook receiver)
	$(RUN) credit-scoring trigger --host 127.0.0.1 --port $${TRIGGER_PORT:-8095}

dashboards: bootstrap ## Regenerate monitoring/grafana/dashboards/*.json from the code
	$(RUN) credit-scoring dashboards

monitoring-demo: bootstrap ## The whole loop on loopback, narrated: drift -> alert -> retraining -> new model (~5 min)
	@command -v prometheus >/dev/null || { echo "needs Debian's prometheus, prometheus-alertmanager, prometheus-pushgateway (apt-get install ...)"; exit 2; }
	UV="$(UV)" $(RUN) credit-scoring monitoring-demo

batch-score: bootstrap ## Score every known client with the champion (Parquet, batch_scores table, events)
	$(RUN) kedro run --pipeline batch_scoring

bench-batch-scoring: bootstrap ## Batch scoring: vectorised vs the API's per-row path, pandas vs Spark local[2] (300k clients)
	$(RUN) python bench/batch_scoring.py

bench-monitoring: bootstrap ## Monitoring pipeline vs Evidently alone (100k events from PostgreSQL, 300k reference), then the demo loop timed
	$(RUN) python bench/monitoring.py
	UV="$(UV)" $(RUN) python bench/monitoring_loop.py

# --- images and deployment -------------------------------------------------------------
# DOCKER: the docker client (one with BuildKit; default: Debian's /usr/bin/docker if present); BASE_IMAGE: the FROM image (default python:3.11-slim);
# CA_BUNDLE: the CA of a TLS-intercepting proxy, passed as a build secret (never stored).
DOCKER ?= $(shell [ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)
PIPELINE_IMAGE ?= credit-scoring-pipeline
PIPELINE_SPARK_IMAGE ?= credit-scoring-pipeline-spark
SERVICE_IMAGE ?= credit-scoring-service
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
comma := ,
# The private engine of `make docker-engine`, used when DOCKER_HOST is not set
ENGINE_SOCKET := $(HOME)/.cache/credit-scoring/docker/docker.sock
ifeq ($(DOCKER_HOST),)
ifneq ($(wildcard $(ENGINE_SOCKET)),)
export DOCKER_HOST := unix://$(ENGINE_SOCKET)
endif
endif

image-pipeline: ## Build the pipeline image (kedro jobs, retrain trigger) tagged with the commit
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -t $(PIPELINE_IMAGE):$(GIT_COMMIT) \
		--build-arg GIT_COMMIT=$(GIT_COMMIT) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) .

image-pipeline-spark: ## Build the pipeline image's Spark variant (Java 17, PySpark; kedro run --env spark)
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host --target spark -t $(PIPELINE_SPARK_IMAGE):$(GIT_COMMIT) \
		--build-arg GIT_COMMIT=$(GIT_COMMIT) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(CA_BUNDLE),--secret id=ca$(comma)src=$(CA_BUNDLE)) .

image-service: bootstrap ## Build the service image from the latest bento (after make build)
	DOCKER="$(DOCKER)" $(RUN) credit-scoring image-service --repository $(SERVICE_IMAGE) \
		$(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))

images: image-pipeline image-pipeline-spark image-service ## The three images

bench-images: bootstrap ## Image sizes and the service container's cold start vs bare bentoml serve (after make build)
	$(RUN) python bench/images.py

manifests: bootstrap ## Regenerate deploy/k8s/base/generated/ from monitoring/ (rules, monitors, dashboards)
	$(RUN) credit-scoring manifests

docker-engine: bootstrap ## As root on a host without Docker running: start a private dockerd (no bridge network)
	$(RUN) credit-scoring docker-engine start

local-base: bootstrap ## Without a registry: build python:3.11-slim's stand-in from Debian packages; prints its tag
	@$(RUN) credit-scoring docker-engine base
