"""Monitoring nodes: the window of production events, the reference of the version that
served them, Evidently's drift report, performance on delayed labels, and publication."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from credit_scoring.config.data_science import DataScienceParams
from credit_scoring.config.monitoring import DriftParams, MonitoringParams
from credit_scoring.core.contract import DataContract, load_contract
from credit_scoring.core.features import transform_rows
from credit_scoring.core.processing import load_processing
from credit_scoring.core.spec import REFERENCE_ARTIFACT, SERVING_ARTIFACTS
from credit_scoring.monitoring.drift import SCORE, prepare, run_report
from credit_scoring.monitoring.metrics import push
from credit_scoring.monitoring.store import Window, read_window
from credit_scoring.storage.schema import SOURCES
from credit_scoring.training.metrics import classification_metrics

logger = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "CREDIT_SCORING_PUSHGATEWAY_URL"


def read_events(database_url: str, params: MonitoringParams) -> pd.DataFrame:
    """The window of prediction events (with their outcomes where known)."""
    # Evidently takes seconds to import: let it load while the events come from the database
    threading.Thread(target=_import_evidently, daemon=True).start()
    w = params.window
    frame = read_window(
        database_url,
        params.model_name,
        Window(
            last_events=w.last_events,
            last_hours=w.last_hours,
            model_version=w.model_version,
            sources=tuple(w.sources),
        ),
    )
    if frame.empty:
        logger.warning(
            "No prediction event of model %s in the window: nothing to monitor yet (send "
            "traffic to the service, e.g. `make simulate-traffic`).",
            params.model_name,
        )
    else:
        logger.info(
            "Window: %d event(s) of %s v%s, %d with a known outcome",
            len(frame),
            params.model_name,
            frame["model_version"].iloc[-1],
            int(frame["defaulted"].notna().sum()),
        )
    return frame


def _import_evidently() -> None:
    import evidently.metrics
    import evidently.presets  # noqa: F401


def fetch_reference(window: pd.DataFrame, params: MonitoringParams) -> dict[str, Any]:
    """What the version named in the events was trained with: its reference sample (logged by
    its training run), its features, feature declarations, outlier bounds and test metrics.
    Never a file that happens to be on disk: another version's reference would be wrong."""
    if window.empty:
        return {}
    name, version = params.model_name, str(window["model_version"].iloc[-1])
    client = MlflowClient()
    model_version = client.get_model_version(name, version)
    run_id = model_version.run_id
    info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    meta = info.metadata or {}
    reference, processing, bounds, contract = _download_reference(run_id, name, version)
    features = list(meta["features"])
    categorical = {c for c in features if c in (meta.get("categories") or {})}
    categorical |= {
        c for c in features if c in contract.columns and contract.columns[c].dtype == "category"
    }
    # typed for the comparison now, and only that kept: a 300,000-row reference held twice
    # (as read and as compared) would cost hundreds of MB at Home Credit size
    scores = reference[SCORE].astype(float).to_numpy()
    reference = prepare(reference, features, categorical)
    reference[SCORE] = scores
    tags = model_version.tags or {}
    test_metrics = {
        key: float(tags[f"test.{key}"])
        for key in ("auc", "business_cost_per_application", "refusal_rate")
        if f"test.{key}" in tags
    }
    logger.info(
        "Reference of %s v%s: %d held-out rows logged by its training run %s",
        name,
        version,
        len(reference),
        run_id,
    )
    return {
        "model_name": name,
        "model_version": version,
        "run_id": run_id,
        "reference": reference,
        "features": features,
        "categorical": sorted(categorical),
        "processing": processing,
        "outlier_bounds": bounds,
        "test_metrics": test_metrics,
    }


def _download_reference(
    run_id: str | None, name: str, version: str
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], DataContract]:
    """The reference sample, processing declaration, outlier bounds and data contract that
    the training run logged (files of that run, parsed here: they are data, not settings)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=folder
            )
        except (MlflowException, OSError) as exc:
            raise RuntimeError(
                f"{name} v{version} (run {run_id}) has no {REFERENCE_ARTIFACT}: it was trained "
                "before versions logged their monitoring reference. Retrain (`make run`), "
                "serve the new version, then monitor it."
            ) from exc
        reference = pd.read_parquet(path)
        serving = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=SERVING_ARTIFACTS, dst_path=folder
            )
        )
        processing = json.loads((serving / "data_processing.json").read_text())
        bounds = json.loads((serving / "outlier_bounds.json").read_text())
        contract = load_contract(json.loads((serving / "data_contract.json").read_text()))
    return reference, processing, bounds, contract


def processed_features(window: pd.DataFrame, reference: dict[str, Any]) -> pd.DataFrame:
    """The events' features as the model saw them (the same row-level processing as in
    training and in the API), so current and reference are compared like for like."""
    spec = load_processing(reference["processing"]).feature_spec()
    raw = window.drop(columns=[c for c in ("defaulted",) if c in window.columns])
    processed = transform_rows(raw, spec, reference["outlier_bounds"])
    for column in reference["features"]:
        if column not in processed.columns:
            processed[column] = np.nan
    return processed


def current_frame(window: pd.DataFrame, reference: dict[str, Any]) -> pd.DataFrame:
    """The window as Evidently compares it with the reference: the model's features,
    processed and typed like the reference's, and the score the API returned."""
    features, categorical = reference["features"], set(reference["categorical"])
    current = prepare(processed_features(window, reference), features, categorical)
    current[SCORE] = window["probability"].astype(float).to_numpy()
    return current


def measure(
    window: pd.DataFrame,
    reference: dict[str, Any],
    params: MonitoringParams,
    data_science: DataScienceParams,
) -> dict[str, Any]:
    """Drift (Evidently) and performance on the labelled events; returns the summary and the
    HTML report."""
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "model_name": params.model_name,
        "model_version": reference.get("model_version"),
        "window": {
            "events": len(window),
            "last_events": params.window.last_events,
            "last_hours": params.window.last_hours,
        },
        "drift": None,
        "performance": {"labelled_events": 0},
        "reference_metrics": reference.get("test_metrics", {}),
    }
    html = "<html><body><p>No prediction event in the window: nothing to compare.</p></body></html>"
    if window.empty:
        summary["status"] = "no_events"
        return {"summary": summary, "html": html}
    if "source" in window:  # how much of the window the API decided, and batch runs scored
        summary["window"]["sources"] = {
            source: int((window["source"] == source).sum()) for source in SOURCES
        }
    summary["window"]["first_event"] = str(window["event_time"].iloc[0])
    summary["window"]["last_event"] = str(window["event_time"].iloc[-1])
    if len(window) < params.window.min_events:
        summary["status"] = "too_few_events"
        logger.warning(
            "Only %d event(s) in the window (monitoring.window.min_events = %d): no drift "
            "verdict this time.",
            len(window),
            params.window.min_events,
        )
    else:
        drift, html = compare_drift(window, reference, params.drift, started)
        summary.update(drift)
    summary["performance"] = performance(window, data_science, params.performance.min_labelled)
    summary["degradation"] = degradation(summary["performance"], summary["reference_metrics"])
    summary["compute_seconds"] = round(time.perf_counter() - started, 3)
    return {"summary": summary, "html": html}


def compare_drift(
    window: pd.DataFrame, reference: dict[str, Any], drift: DriftParams, started: float
) -> tuple[dict[str, Any], str]:
    """Evidently's comparison of the window with the reference: the summary's ``seconds``,
    ``drift`` and ``status`` keys, and the HTML report. ``started``: when measuring began."""
    features, categorical = reference["features"], set(reference["categorical"])
    current = current_frame(window, reference)
    ref = reference["reference"]  # prepared when it was fetched
    prepared = time.perf_counter()
    snapshot, result = run_report(ref, current, features, categorical, drift)
    reported = time.perf_counter()
    html = snapshot.get_html_str(as_iframe=False)
    seconds = {
        "prepare": round(prepared - started, 2),
        "evidently": round(reported - prepared, 2),
        "html": round(time.perf_counter() - reported, 2),
    }
    drifted = [f for f, r in result.features.items() if r["drifted"]]
    logger.info(
        "Drift: %d of %d features drifted (share %.2f, dataset drift: %s); score drift %.3f (%s)%s",
        result.drifted_features,
        len(result.features),
        result.drift_share,
        "yes" if result.dataset_drift else "no",
        result.score["value"],
        "drifted" if result.score["drifted"] else "stable",
        f"; drifted: {', '.join(drifted[:8])}" if drifted else "",
    )
    verdict = {**result.model_dump(), "threshold_share": drift.drift_share}
    return {"seconds": seconds, "drift": verdict, "status": "ok"}, html


def performance(
    window: pd.DataFrame, science: DataScienceParams, min_labelled: int
) -> dict[str, Any]:
    labelled = window[window["defaulted"].notna()]
    result: dict[str, Any] = {"labelled_events": len(labelled)}
    if len(labelled) < min_labelled:
        result["status"] = "too_few_labels"
        return result

    y = labelled["defaulted"].astype(int).to_numpy()
    scores = labelled["probability"].astype(float).to_numpy()
    refuse = (labelled["decision"] == "refuse").to_numpy()
    metrics = classification_metrics(y, scores, refuse, science.cost, science.fbeta_beta)
    result.update(
        status="ok",
        auc=metrics["auc"],
        business_cost_per_application=metrics["business_cost_per_application"],
        default_rate=float(y.mean()),
        refusal_rate=metrics["refusal_rate"],
        recall=metrics["recall"],
    )
    logger.info(
        "Labelled events: %d, AUC %.3f, cost per application %.3f, default rate %.3f",
        len(labelled),
        metrics["auc"],
        metrics["business_cost_per_application"],
        y.mean(),
    )
    return result


def degradation(perf: dict[str, Any], test: dict[str, float]) -> dict[str, float | None]:
    """How much worse the labelled window is than the version's test set."""
    auc, cost = perf.get("auc"), perf.get("business_cost_per_application")
    out: dict[str, float | None] = {"auc_drop": None, "cost_ratio": None}
    if auc is not None and not math.isnan(auc) and "auc" in test:
        out["auc_drop"] = test["auc"] - auc
    if cost is not None and test.get("business_cost_per_application"):
        out["cost_ratio"] = cost / test["business_cost_per_application"]
    return out


def publish(measured: dict[str, Any], params: MonitoringParams) -> dict[str, Any]:
    """Log the run to MLflow (monitoring experiment, tagged with the model version) and push
    the numbers to the Pushgateway. Returns the summary that the catalog writes."""
    summary = dict(measured["summary"])
    summary["timestamp"] = time.time()
    url = os.environ.get(PUSHGATEWAY_ENV) or (
        str(params.pushgateway_url) if params.pushgateway_url else None
    )
    if summary.get("model_version") is None:
        summary["pushed"] = False
        return summary
    summary["mlflow_run_id"] = _log_run(summary, measured["html"], params)
    if url is None:
        logger.warning(
            "No Pushgateway configured (monitoring.pushgateway_url or %s): the numbers are in "
            "data/08_reporting/monitoring/ and MLflow, but Prometheus will not see them.",
            PUSHGATEWAY_ENV,
        )
        summary["pushed"] = False
        return summary
    try:
        push(url.rstrip("/"), params.job, summary)
        summary["pushed"] = True
        logger.info("Pushed the monitoring metrics to %s", url)
    except OSError as exc:
        summary["pushed"] = False
        logger.error("Could not push to the Pushgateway at %s: %s", url, exc)
    return summary


def _log_run(summary: dict[str, Any], html: str, params: MonitoringParams) -> str:
    """One MLflow run in the monitoring experiment, tagged with the model version; its id."""
    mlflow.set_experiment(params.experiment_name + params.experiment_suffix)
    with mlflow.start_run(
        run_name=f"monitor v{summary['model_version']}",
        tags={"model_name": params.model_name, "model_version": str(summary["model_version"])},
        nested=mlflow.active_run() is not None,
    ) as run:
        mlflow.log_metrics(flat_metrics(summary))
        mlflow.log_dict(summary, "monitoring_summary.json")
        mlflow.log_text(html, "drift_report.html")
        return str(run.info.run_id)


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {"window_events": float(summary["window"]["events"])}
    drift = summary.get("drift")
    if drift:
        out.update(
            dataset_drift=float(drift["dataset_drift"]),
            drift_share=float(drift["drift_share"]),
            score_drift=float(drift["score"]["value"]),
        )
        for feature, result in drift["features"].items():
            out[f"drift.{feature}"] = float(result["score"])
    for key, value in summary["performance"].items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and not math.isnan(float(value)):
            out[f"labelled.{key}"] = float(value)
    return out


def extract_drift_report(measured: dict[str, Any]) -> str:
    """The HTML drift report of the measurement, for the catalog to write."""
    return str(measured["html"])
