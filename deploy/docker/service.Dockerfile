# The scoring service image, built from the bento: only the bento's `serving` dependency group
# (env/python/requirements.txt, exported from uv.lock), its code and its model. Nothing of
# training (Kedro, MLflow, DVC, Optuna) is in it.
#
# The build context is the bento with its models, assembled by `make image-service`
# (credit-scoring image-service), which also sets the lineage labels. By hand:
#   docker build -f deploy/docker/service.Dockerfile <context>
# Behind a TLS-intercepting proxy: --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/uv && /opt/uv/bin/pip install "uv==${UV_VERSION}"
COPY env/python/requirements.txt /tmp/requirements.txt
# --no-deps: the file is the locked closure (uv export), nothing else may come in
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    --mount=type=cache,target=/root/.cache/uv \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv venv --python python3 /opt/venv \
    && /opt/uv/bin/uv pip install --python /opt/venv/bin/python --no-deps -r /tmp/requirements.txt
# Size (target: under 700 MB): no test suites, headers or stubs; symbols out of llvmlite (LLVM,
# for numba, for SHAP) and out of every extension module that auditwheel left alone. Never the
# wheels' bundled libraries (*.libs/) nor the modules patched to find them (an RPATH or
# RUNPATH): auditwheel rewrote those with patchelf, and strip corrupts them. The imports and
# the few calls below prove that what was stripped still loads and computes.
# binutils lives in this stage only; its version follows the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends binutils libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && find /opt/venv -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && find /opt/venv \( -name '*.pyi' -o -name '*.pxd' -o -name '*.h' -o -name '*.c' -o -name '*.cpp' \) -delete \
    && strip --strip-unneeded /opt/venv/lib/python3.11/site-packages/llvmlite/binding/libllvmlite.so \
    && find /opt/venv -name '*.so' -not -path '*.libs/*' -not -path '*/llvmlite/*' -exec sh -c \
       'for m; do readelf -d "$m" | grep -qiE "rpath|runpath" || strip --strip-unneeded "$m"; done' \
       sh {} + \
    && /opt/venv/bin/python -c "import numba, shap, lightgbm, bentoml, sklearn.linear_model, \
scipy.sparse, scipy.special, sqlalchemy, psycopg, yaml, aiohttp, jwt, numpy as np, pandas as pd; \
from cryptography.hazmat.primitives.asymmetric import ec; k = ec.generate_private_key(ec.SECP256R1()); \
assert jwt.decode(jwt.encode({'a': 1}, k, algorithm='ES256'), k.public_key(), algorithms=['ES256']); \
assert np.allclose(np.linalg.inv(np.eye(3)), np.eye(3)) and pd.DataFrame({'a': [1, 2]}).a.sum() == 3"

FROM ${BASE_IMAGE}
# the reference this image is pushed under (set by `make image-service`): every prediction
# event and /metrics name it, so an event leads back to the image
ARG IMAGE_REF=""
# LightGBM needs OpenMP's runtime (not in python:3.11-slim); a numeric, non-root user
# (Kubernetes checks runAsNonRoot against the number)
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# the bento (code, model, OpenAPI), owned by root: the service cannot change what it serves
COPY . /home/bentoml/bento
# Read-only root filesystem: BentoML's runtime files and the numba cache go to /tmp, the event
# journal to /var/lib/credit-scoring/journal (a volume that outlives a container restart).
ENV PATH=/opt/venv/bin:${PATH} \
    BENTO_PATH=/home/bentoml/bento \
    BENTOML_HOME=/tmp/bentoml \
    BENTOML_CONTAINERIZED=true \
    BENTOML_DO_NOT_TRACK=True \
    BENTOML_PORT=3000 \
    HOME=/tmp \
    NUMBA_CACHE_DIR=/tmp/numba \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CREDIT_SCORING_EVENT_JOURNAL_DIR=/var/lib/credit-scoring/journal \
    CREDIT_SCORING_IMAGE=${IMAGE_REF}
WORKDIR /home/bentoml/bento
USER 10001:10001
EXPOSE 3000
CMD ["bentoml", "serve", "/home/bentoml/bento"]
