"""Bring the champion from the MLflow registry into the BentoML model store, then build.

``credit-scoring build`` (what ``make build`` runs) imports
``models:/<name>@champion`` as the BentoML model ``<name>``: the MLflow model directory
(native LightGBM or XGBoost file, or skops), and ``serving_spec.json`` with the registry version,
threshold, features, categories and the contract, feature declarations and outlier bounds
logged by the training run itself. The bento is then built from ``bentofile.yaml``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import bentoml
import mlflow
import pandas as pd

from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.core.encoding import TREE_KINDS
from credit_scoring.core.spec import (
    BACKGROUND_FILE,
    MODEL_DIR,
    PACKAGED_MODEL_FILE,
    SPEC_FILE,
    save_background,
)
from credit_scoring.training.champion import champion_spec
from credit_scoring.training.registry import CHAMPION

logger = logging.getLogger(__name__)


def import_champion(
    model_name: str,
    alias: str = CHAMPION,
    limits: dict[str, Any] | None = None,
    background: pd.DataFrame | None = None,
    fallback: dict[str, Any] | None = None,
) -> bentoml.Model:
    """Import ``models:/<model_name>@<alias>``; returns the BentoML model.

    ``fallback`` (keys data_contract, data_processing, outlier_bounds) is used only for a run
    that did not log its own serving artifacts.
    """
    spec, uri = champion_spec(model_name, alias, limits=limits, fallback=fallback)
    run_id = spec.run_id
    local = mlflow.artifacts.download_artifacts(uri)
    labels = {"stage": alias, "candidate": spec.candidate}
    metadata = {
        "mlflow_model_uri": uri,
        "mlflow_run_id": run_id or "",
        "model_version": spec.model_version,
        "threshold": spec.threshold,
        "features": spec.features,
        "kind": spec.kind,
    }
    with bentoml.models.create(model_name, labels=labels, metadata=metadata) as bento_model:
        shutil.copytree(local, bento_model.path_of(MODEL_DIR))
        spec.save(bento_model.path_of(SPEC_FILE))
        if spec.kind not in TREE_KINDS:  # the boosters explain themselves (TreeSHAP)
            if background is None:
                raise RuntimeError("A scikit-learn champion needs background rows for SHAP")
            sample = background[spec.features].sample(min(100, len(background)), random_state=0)
            save_background(sample, bento_model.path_of(BACKGROUND_FILE))
    logger.info(
        "Imported %s as BentoML model %s (threshold %.4f)", uri, bento_model.tag, spec.threshold
    )
    return bento_model


def export_requirements(project_root: Path = PROJECT_ROOT) -> Path:
    """The bento's requirements: the ``serving`` group at its locked versions (``uv.lock``)."""
    target = project_root / "src" / "requirements-serving.txt"  # inside the build context
    uv = shlex.split(os.environ.get("UV", "python3 -m uv"))
    subprocess.run(
        [
            *uv,
            "export",
            "--frozen",
            "--only-group",
            "serving",
            "--no-hashes",
            "--no-emit-project",
            "--quiet",
            "-o",
            str(target),
        ],
        cwd=project_root,
        check=True,
    )
    return target


def build_bento(model_tag: str, project_root: Path = PROJECT_ROOT) -> str:
    """``bentoml build`` of ``bentofile.yaml`` serving ``model_tag``; returns the bento tag.

    The model's tag is written into the build context (``serving/packaged_model.txt``) for
    the build only, so the bento serves the model it was built with, whatever the model's
    registered name; the source tree is left as it was (a test's build does not change what
    a service started from source serves).
    """
    export_requirements(project_root)
    packaged = project_root / "src" / PACKAGED_MODEL_FILE
    previous = packaged.read_text() if packaged.exists() else None
    packaged.write_text(model_tag + "\n")
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bentoml",
                "build",
                "--output",
                "tag",
                "-f",
                str(project_root / "bentofile.yaml"),
                str(project_root / "src"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if previous is None:
            packaged.unlink(missing_ok=True)
        else:
            packaged.write_text(previous)
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    logger.info("Built bento %s", tag)
    return tag


def package(
    env: str | None = None,
    alias: str = CHAMPION,
    project: Path = PROJECT_ROOT,
    build: bool = True,
) -> str | None:
    """Import the model of registry alias ``alias`` into BentoML, with the project's
    parameters (Kedro environment ``env``) and data; then build the bento unless ``build`` is
    false. Returns the bento's tag (None when nothing was built)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = project.resolve()
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri)
    params = project_parameters(env, conf_source=root / "conf")
    serving = params.get("serving", {})
    primary = root / "data/03_primary/applications_primary.parquet"
    background = pd.read_parquet(primary) if primary.exists() else None
    bento_model = import_champion(
        params["data_science"]["registry"]["model_name"],
        alias=alias,
        limits=serving.get("limits"),
        background=background,
        fallback={
            "data_contract": params["data_contract"],
            "data_processing": params["data_processing"],
            "outlier_bounds": _json_or_none(root / "data/06_models/outlier_bounds.json"),
        },
    )
    return build_bento(str(bento_model.tag)) if build else None


def _json_or_none(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.exists() else None
