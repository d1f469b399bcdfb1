"""The monitoring run's numbers as Prometheus metrics, pushed to a Pushgateway.

Every metric is labelled with ``model_name`` and ``model_version``; the per-feature ones also
with ``feature``, whose values are the model's features (a bounded set, fixed by the model).
A push replaces the whole group of the job and model (HTTP PUT), so the series of a version
that no longer serves disappear at the next run instead of lingering.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

logger = logging.getLogger(__name__)

PREFIX = "credit_scoring_monitoring"


def build_registry(summary: dict[str, Any]) -> CollectorRegistry:
    """A fresh registry holding one monitoring run's numbers."""
    registry = CollectorRegistry()
    model = {"model_name": summary["model_name"], "model_version": str(summary["model_version"])}
    names = list(model)

    def gauge(name: str, doc: str, value: float | None, extra: list[str] | None = None) -> Gauge:
        metric = Gauge(f"{PREFIX}_{name}", doc, [*names, *(extra or [])], registry=registry)
        if value is not None and not extra:
            metric.labels(**model).set(value)
        return metric

    gauge(
        "last_run_timestamp_seconds",
        "End of the last monitoring run (Unix time)",
        summary["timestamp"],
    )
    gauge("window_events", "Prediction events in the monitored window", summary["window"]["events"])
    sources = summary["window"].get("sources")
    if sources:  # label values: the bounded set storage.schema.SOURCES (api, batch)
        by_source = gauge(
            "window_source_events", "Events of the window by who decided", None, ["source"]
        )
        for source, count in sources.items():
            by_source.labels(**model, source=source).set(count)
    gauge(
        "labelled_events",
        "Events of the window whose outcome (delayed label) is known",
        summary["performance"]["labelled_events"],
    )
    drift = summary.get("drift")
    if drift is not None:
        gauge(
            "dataset_drift", "1 if Evidently detects dataset drift", float(drift["dataset_drift"])
        )
        gauge("drift_share", "Share of the model's features that drifted", drift["drift_share"])
        gauge(
            "drifted_features",
            "Number of the model's features that drifted",
            drift["drifted_features"],
        )
        gauge("score_drift", "Drift score of the model's output (score)", drift["score"]["value"])
        gauge("score_drifted", "1 if the model's score drifted", float(drift["score"]["drifted"]))
        score = gauge("feature_drift_score", "Drift score per feature", None, ["feature"])
        flag = gauge("feature_drifted", "1 if the feature drifted", None, ["feature"])
        for feature, result in drift["features"].items():
            score.labels(**model, feature=feature).set(result["score"])
            flag.labels(**model, feature=feature).set(float(result["drifted"]))
        gauge(
            "drift_threshold",
            "Dataset drift threshold: share of drifted features",
            drift["threshold_share"],
        )
    performance = summary["performance"]
    for key, doc in (
        ("auc", "AUC on the labelled events of the window"),
        ("business_cost_per_application", "Business cost per labelled application"),
        ("default_rate", "Observed default rate of the labelled events"),
        ("refusal_rate", "Share of labelled events refused"),
    ):
        value = performance.get(key)
        if value is not None and not math.isnan(value):
            gauge(f"labelled_{key}", doc, value)
    reference = summary.get("reference_metrics") or {}
    for key, doc in (
        ("auc", "AUC of this version on its test set (training run)"),
        ("business_cost_per_application", "Business cost per application on its test set"),
    ):
        if reference.get(key) is not None:
            gauge(f"test_{key}", doc, reference[key])
    return registry


def push(url: str, job: str, summary: dict[str, Any], timeout: float = 10.0) -> None:
    """PUT the run's numbers to the Pushgateway, grouped by job and model name."""
    push_to_gateway(
        url,
        job=job,
        registry=build_registry(summary),
        grouping_key={"model_name": summary["model_name"]},
        timeout=timeout,
    )
