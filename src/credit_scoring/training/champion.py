"""A registered model as the scoring code needs it: its ``ServingSpec`` and its files.

``make build`` (ops/packaging.py) copies them into the BentoML model the API serves, and the
batch_scoring pipeline loads them through a catalog dataset (``ChampionScorerDataset``): both
read the same registry version through this one function, so the API and a batch score with
the same threshold, features, declarations and bounds.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from credit_scoring.core.processing import load_processing
from credit_scoring.core.spec import (
    LINEAGE_KEYS,
    MODEL_CARD_ARTIFACT,
    MODEL_DIR,
    SERVING_ARTIFACTS,
    ServingLimits,
    ServingSpec,
)

logger = logging.getLogger(__name__)


def _run_artifact(run_id: str, name: str) -> Any | None:
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{SERVING_ARTIFACTS}/{name}"
        )
    except Exception:  # older runs did not log it
        return None
    return json.loads(Path(path).read_text())


def run_lineage(client: MlflowClient, run_id: str | None) -> dict[str, str]:
    """``LINEAGE_KEYS`` of a training run, from the tags it logged ("unknown" if it did not)."""
    tags = client.get_run(run_id).data.tags if run_id else {}
    lineage = {
        "mlflow_run_id": run_id or "unknown",
        "git_commit": tags.get("git_commit", "unknown"),
        "data_md5": tags.get("dvc_model_input_md5", "unknown"),
    }
    assert tuple(lineage) == LINEAGE_KEYS
    return lineage


def champion_spec(
    model_name: str,
    alias: str,
    limits: dict[str, Any] | None = None,
    fallback: dict[str, Any] | None = None,
) -> tuple[ServingSpec, str]:
    """The spec of ``models:/<model_name>@<alias>`` and the URI of that exact version.

    ``fallback`` (keys data_contract, data_processing, outlier_bounds) is used only for a run
    that did not log its own serving artifacts.
    """
    client = MlflowClient()
    version = client.get_model_version_by_alias(model_name, alias)
    uri = f"models:/{model_name}/{version.version}"
    info = mlflow.models.get_model_info(uri)
    meta = info.metadata or {}
    run_id = version.run_id
    logged = {
        key: _run_artifact(run_id, f"{key}.json") if run_id else None
        for key in ("data_contract", "data_processing", "outlier_bounds")
    }
    for key, value in logged.items():
        if value is None:
            if not fallback or key not in fallback:
                raise RuntimeError(
                    f"Run {run_id} of {uri} did not log {SERVING_ARTIFACTS}/{key}.json; retrain "
                    "with this version of the pipeline (`make run`)."
                )
            logger.warning("Run %s lacks %s.json: using the project's current one", run_id, key)
            logged[key] = fallback[key]
    spec = ServingSpec(
        model_name=model_name,
        model_version=str(version.version),
        run_id=run_id,
        candidate=meta.get("candidate", "unknown"),
        kind=meta["kind"],
        threshold=float(meta["threshold"]),
        features=list(meta["features"]),
        categories=dict(meta.get("categories") or {}),
        data_contract=logged["data_contract"],
        feature_spec=load_processing(dict(logged["data_processing"] or {}))
        .feature_spec()
        .model_dump(mode="json"),
        outlier_bounds=logged["outlier_bounds"],
        limits=ServingLimits.model_validate(limits or {}),
        lineage=run_lineage(client, run_id),
        card=(_run_artifact(run_id, MODEL_CARD_ARTIFACT) if run_id else None) or {},
    )
    return spec, uri


def download_champion(model_name: str, alias: str, folder: Path) -> ServingSpec:
    """The model of ``alias`` laid out in ``folder`` as in a bento (``MODEL_DIR``); its spec."""
    spec, uri = champion_spec(model_name, alias)
    local = mlflow.artifacts.download_artifacts(uri)
    shutil.copytree(local, folder / MODEL_DIR)
    return spec
