"""One retraining, as the local backend of the retrain trigger runs it (or a person, by hand).

    credit-scoring retrain --project . --retrain-id ID

Runs ``kedro run --pipeline retraining`` in the project (the training pipelines on the
newest data snapshot, ending at the registry gate, where the challenger and the champion are
compared on the same recent labelled rows: the new snapshot's test split), then records in
``retrain_runs`` which version it registered and the gate's decision, and tags that version's
MLflow run with the retrain id. Exit code 0 if the pipeline succeeded (promoted or not).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from credit_scoring.storage.database import database_url

logger = logging.getLogger("credit_scoring.retrain")


def newest_version(tracking_uri: str, model_name: str) -> tuple[str | None, dict[str, str]]:
    """The newest registered version of the model and its tags (the gate writes them)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions = client.search_model_versions(f"name='{model_name}'")
    if not versions:
        return None, {}
    newest = max(versions, key=lambda v: int(v.version))
    return str(newest.version), dict(newest.tags or {})


def retrain(
    retrain_id: str,
    project: Path | None = None,
    model_name: str = "credit_scoring",
    pipeline: str = "retraining",
    kedro_args: str = "",
) -> int:
    """Run the retraining ``retrain_id`` in ``project`` (default: the working directory) and
    record its result. Returns the exit code (0: the pipeline succeeded, promoted or not)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
    from credit_scoring.monitoring.decisions import DecisionStore

    project = (project or Path.cwd()).resolve()
    store = DecisionStore(os.environ.get("CREDIT_SCORING_DATABASE_URL") or database_url(project))
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project / 'mlflow.db'}"
    before, _ = newest_version(tracking, model_name)
    store.run_started(retrain_id, model_name, "local")
    started = time.monotonic()
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", pipeline]
    command += kedro_args.split()
    logger.info("Retraining %s: %s", retrain_id, " ".join(command))
    result = subprocess.run(command, cwd=project, check=False)
    elapsed = time.monotonic() - started
    version, tags = newest_version(tracking, model_name)
    if result.returncode != 0 or version is None or version == before:
        detail = f"kedro run exited with {result.returncode} after {elapsed:.0f} s"
        store.run_finished(retrain_id, "failed", detail=detail)
        logger.error("Retraining %s failed: %s", retrain_id, detail)
        store.close()
        return result.returncode or 1
    gate = tags.get("gate.decision", "unknown")
    detail = f"v{version} {gate} in {elapsed:.0f} s: {tags.get('gate.reasons', '')}"[:4000]
    store.run_finished(
        retrain_id, "succeeded", model_version=version, gate_decision=gate, detail=detail
    )
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        run_id = client.get_model_version(model_name, version).run_id
        if run_id:
            client.set_tag(run_id, "retrain_id", retrain_id)
        client.set_model_version_tag(model_name, version, "retrain_id", retrain_id)
    except Exception as exc:  # the tags are a convenience; the result is already recorded
        logger.warning("Could not tag the run with the retrain id: %s", exc)
    logger.info("Retraining %s: %s", retrain_id, detail)
    store.close()
    return 0
