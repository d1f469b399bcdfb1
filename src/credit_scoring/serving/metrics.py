"""The service's own Prometheus metrics (BentoML's request metrics are in telemetry.py).

Declared at import, as BentoML requires: its multiprocess collector must know them before
the workers start. Every label takes a bounded set of values.
"""

from __future__ import annotations

import bentoml

from credit_scoring.auth.guard import Refusal
from credit_scoring.core.spec import LINEAGE_KEYS, ServingSpec

PROBABILITY = bentoml.metrics.Histogram(
    name="credit_scoring_predicted_probability",
    documentation="Predicted probability of default of scored applications",
    buckets=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
DECISIONS = bentoml.metrics.Counter(
    name="credit_scoring_decisions",
    documentation="Decisions returned, by outcome",
    labelnames=["decision"],
)
REJECTED = bentoml.metrics.Counter(
    name="credit_scoring_rejected_requests",
    documentation="Requests refused, by reason (invalid, too_large, not_json, not_found, ...) "
    "and route template (`other` for a path that matches no route)",
    labelnames=["reason", "endpoint"],
)
JOURNALED = bentoml.metrics.Counter(
    name="credit_scoring_events_journaled",
    documentation="Prediction events written to the worker's journal (before the response); "
    "minus credit_scoring_events_stored_total: the events not in the database yet",
)
MODEL_INFO = bentoml.metrics.Gauge(
    name="credit_scoring_model_info",
    documentation="The model being served (value 1): its registry version, its lineage (MLflow "
    "run, training commit, data hash) and the image serving it",
    labelnames=["model_name", "model_version", "candidate", *LINEAGE_KEYS, "image"],
    multiprocess_mode="max",
)


def observe_decision(probability: float, decision: str) -> None:
    PROBABILITY.observe(probability)
    DECISIONS.labels(decision=decision).inc()


def count_rejected(refusal: Refusal) -> None:
    REJECTED.labels(reason=refusal.reason, endpoint=refusal.endpoint).inc()


def publish_model(spec: ServingSpec, image: str | None) -> None:
    """The served model's identity on /metrics (``credit_scoring_model_info``)."""
    MODEL_INFO.labels(
        model_name=spec.model_name,
        model_version=spec.model_version,
        candidate=spec.candidate,
        image=image or "none",
        **{key: spec.lineage.get(key, "unknown") for key in LINEAGE_KEYS},
    ).set(1)
