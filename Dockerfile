# The pipeline image: every `kedro run` job (training, monitoring, retraining) and the retrain
# trigger. The scoring service has its own, smaller image, built from the bento
# (deploy/docker/service.Dockerfile, `make image-service`).
#
#   docker build -t credit-scoring-pipeline:0.1.0 .
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

FROM ${BASE_IMAGE}
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="credit-scoring-pipeline" \
      org.opencontainers.image.description="Kedro jobs (training, monitoring, retraining) and the retrain trigger" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
# LightGBM needs OpenMP's runtime (not in python:3.11-slim); a numeric, non-root user
# (Kubernetes checks runAsNonRoot against the number)
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /app /app
COPY conf ./conf
COPY pyproject.toml uv.lock ./
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
    GIT_PYTHON_REFRESH=quiet \
    CREDIT_SCORING_GIT_COMMIT=${GIT_COMMIT}
USER 10001:10001
CMD ["kedro", "run"]
