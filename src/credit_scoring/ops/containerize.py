"""Build the scoring service's image from a bento: ``credit-scoring image-service``.

What ``make image-service`` runs, locally and in the deploy workflow. The build context is
the bento (its code, OpenAPI and the requirements exported from ``uv.lock``) plus the models
it serves, copied from the BentoML model store; the Dockerfile is
``deploy/docker/service.Dockerfile``. The image is labelled with its lineage (OCI labels):
the commit it was built from, the model's name and version, its MLflow run, the commit that
trained it and the hash of its training data, so any image leads back to the run and data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import bentoml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.core.lineage import GIT_COMMIT_ENV, git_commit
from credit_scoring.core.spec import LINEAGE_KEYS, SPEC_FILE, ServingSpec
from credit_scoring.ops.docker_engine import docker_client

DOCKERFILE = PROJECT_ROOT / "deploy/docker/service.Dockerfile"
LABEL_PREFIX = "io.credit-scoring"


def build_context(bento_tag: str, target: Path) -> tuple[bentoml.Bento, ServingSpec]:
    """Copy the bento and the models it serves into ``target``; returns the bento and spec."""
    bento = bentoml.get(bento_tag)
    shutil.copytree(bento.path, target, dirs_exist_ok=True)
    spec: ServingSpec | None = None
    for info in bento.info.all_models:
        model = bentoml.models.get(info.tag)
        folder = target / "models" / model.tag.name
        shutil.copytree(model.path, folder / str(model.tag.version))
        (folder / "latest").write_text(str(model.tag.version))
        spec_file = Path(model.path) / SPEC_FILE
        if spec_file.exists():
            spec = ServingSpec.load(spec_file)
    if spec is None:
        raise RuntimeError(f"Bento {bento.tag} serves no model with a {SPEC_FILE}: `make build`")
    readable_by_all(target)  # the store keeps models private (0700); the image's user is not root
    return bento, spec


def readable_by_all(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | (0o755 if path.is_dir() else 0o644))


def image_tags(repository: str, spec: ServingSpec, commit: str) -> list[str]:
    """``<repo>:<commit>`` (unique, what a deployment pins) and ``<repo>:model-v<version>``."""
    return [f"{repository}:{commit[:40]}", f"{repository}:model-v{spec.model_version}"]


def labels(bento: bentoml.Bento, spec: ServingSpec, commit: str) -> dict[str, str]:
    lineage = {key: spec.lineage.get(key, "unknown") for key in LINEAGE_KEYS}
    found = {
        "org.opencontainers.image.title": "credit-scoring-service",
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.version": f"model-v{spec.model_version}",
        f"{LABEL_PREFIX}.bento": str(bento.tag),
        f"{LABEL_PREFIX}.model.name": spec.model_name,
        f"{LABEL_PREFIX}.model.version": spec.model_version,
        f"{LABEL_PREFIX}.mlflow.run-id": lineage["mlflow_run_id"],
        f"{LABEL_PREFIX}.training.git-commit": lineage["git_commit"],
        f"{LABEL_PREFIX}.data.md5": lineage["data_md5"],
    }
    source = os.environ.get("GITHUB_REPOSITORY")
    if source:  # set in GitHub Actions
        found["org.opencontainers.image.source"] = f"https://github.com/{source}"
    return found


def build_command(
    docker: list[str],
    context: Path,
    tags: list[str],
    image_labels: dict[str, str],
    base_image: str | None,
    ca_bundle: Path | None,
) -> list[str]:
    command = [*docker, "build", "--network", "host", "-f", str(DOCKERFILE)]
    for tag in tags:
        command += ["-t", tag]
    for key, value in image_labels.items():
        command += ["--label", f"{key}={value}"]
    command += ["--build-arg", f"IMAGE_REF={tags[0]}"]
    if base_image:
        command += ["--build-arg", f"BASE_IMAGE={base_image}"]
    if ca_bundle:
        command += ["--secret", f"id=ca,src={ca_bundle}"]
    return [*command, str(context)]


def build_image(
    bento_tag: str = "credit_scoring:latest",
    repository: str = "credit-scoring-service",
    base_image: str | None = None,
    ca_bundle: Path | None = None,
) -> str:
    """Build the image of bento ``bento_tag`` as ``repository:<tags>`` (``FROM base_image``
    if given; ``ca_bundle`` as a build secret, never stored). Returns its first tag."""
    docker = docker_client()
    commit = git_commit() or os.environ.get(GIT_COMMIT_ENV) or "unknown"
    with tempfile.TemporaryDirectory(prefix="service-image-") as folder:
        bento, spec = build_context(bento_tag, Path(folder))
        tags = image_tags(repository, spec, commit)
        command = build_command(
            docker, Path(folder), tags, labels(bento, spec, commit), base_image, ca_bundle
        )
        subprocess.run(command, check=True, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    return tags[0]
