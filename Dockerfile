# The pipeline image: every `kedro run` job (training, monitoring, retraining, batch scoring) and
# the retrain trigger. The scoring service has its own, smaller image, built from the bento
# (deploy/docker/service.Dockerfile, `make image-service`).
#
#   docker build -t credit-scoring-pipeline:0.1.0 .
#
# Its Spark variant (target `spark`, `make image-pipeline-spark`) adds a Java 17 runtime and the
# `spark` dependency group (PySpark, narwhals) for `kedro run --env spark`, locally (`local[*]`)
# or as the driver and executors of a Kubernetes cluster (deploy/k8s/base/spark-processing.yaml):
#
#   docker build --target spark -t credit-scoring-pipeline-spark:0.1.0 .
#
# Behind a TLS-intercepting proxy (a bank's network), pass the proxy's CA bundle as a build
# secret; it is mounted only while packages download and never stored in a layer:
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt .
# Without a registry (an air-gapped build host), pass a local base: --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# uv from PyPI, in a throw-away venv of this stage (no image registry needed)
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/uv && /opt/uv/bin/pip install "uv==${UV_VERSION}"
# the locked dependencies first: this layer is reused until uv.lock changes
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-default-groups --no-install-project --python python3
# then the project itself (the jobs find conf/ beside src/, as in a checkout)
COPY README.md ./
COPY src ./src
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-default-groups --python python3 \
    && find /app/.venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

# The Spark variant's environment: the same, plus the `spark` group (PySpark carries Spark's
# jars, ~480 MB). A stage of its own, so the pipeline image never carries it.
FROM build AS build-spark
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-default-groups --group spark --python python3 \
    && find /app/.venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +

# What both images run on. LightGBM needs OpenMP's runtime (not in python:3.11-slim); a
# numeric, non-root user (Kubernetes checks runAsNonRoot against the number).
FROM ${BASE_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
# Read-only root filesystem: everything a job writes goes to /app/data (a volume) or /tmp.
ENV PATH=/app/.venv/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/tmp/numba \
    KEDRO_LOGGING_CONFIG=/app/conf/logging_container.yml \
    KEDRO_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1 \
    GIT_PYTHON_REFRESH=quiet

# The Spark variant. Java first: its layer stays cached while the code changes.
FROM runtime AS spark
ARG GIT_COMMIT=unknown
# Debian's Java 17 (Spark 4 runs on 17 or 21); man1 is missing from slim images, and the
# package's alternatives fail without it.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=build-spark /app /app
COPY conf ./conf
COPY pyproject.toml uv.lock ./
# Spark executors on Kubernetes start with the argument `executor` (deploy/k8s executor template)
COPY deploy/docker/spark-executor.sh /usr/local/bin/spark-executor
# Spark on a read-only root: its scratch space and the JVM's temporary files go to /tmp (a
# volume); SPARK_LOCAL_IP keeps a local[*] run on loopback (a cluster's pods set their own
# address); the Python workers run the image's interpreter, which has the project.
ENV SPARK_HOME=/app/.venv/lib/python3.11/site-packages/pyspark \
    SPARK_LOCAL_DIRS=/tmp/spark \
    SPARK_LOCAL_IP=127.0.0.1 \
    PYSPARK_PYTHON=/app/.venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/app/.venv/bin/python \
    CREDIT_SCORING_GIT_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.title="credit-scoring-pipeline-spark" \
      org.opencontainers.image.description="Kedro jobs on the Spark engine (kedro run --env spark): driver and executors" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
USER 10001:10001
CMD ["kedro", "run", "--env", "spark"]

# The pipeline image (the last stage: what `docker build .` builds)
FROM runtime AS pipeline
ARG GIT_COMMIT=unknown
COPY --from=build /app /app
COPY conf ./conf
COPY pyproject.toml uv.lock ./
ENV CREDIT_SCORING_GIT_COMMIT=${GIT_COMMIT}
LABEL org.opencontainers.image.title="credit-scoring-pipeline" \
      org.opencontainers.image.description="Kedro jobs (training, monitoring, retraining, batch scoring) and the retrain trigger" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
USER 10001:10001
CMD ["kedro", "run"]
