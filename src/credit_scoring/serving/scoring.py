"""Scoring requests: the decision for each application, its metrics and its prediction event.

Every route that decides on an application (``/predict``, ``/predict_batch``, ``/explain``
and the client lookups) goes through ``Scoring``, so the decision, the metrics and the
stored event cannot differ between routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

from credit_scoring.core.spec import ServingSpec
from credit_scoring.serving.metrics import JOURNALED, observe_decision
from credit_scoring.serving.schemas import (
    BatchItem,
    BatchPrediction,
    Explanation,
    FeatureContribution,
    Prediction,
)
from credit_scoring.serving.scorer import Scorer
from credit_scoring.serving.telemetry import REQUEST_ID, touched_client
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.events import EventStore
from credit_scoring.storage.journal import time_ordered_id


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(BentoMLException):
    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def check_client_id(spec: ServingSpec, client_id: str | None) -> None:
    """Refuse a client id where the data has none; note it for the access audit."""
    if client_id is not None and spec.contract.id_column is None:
        raise Unprocessable(
            "client_id: this model's data has no client id (data_contract.id_column is null); "
            "leave client_id out."
        )
    touched_client(client_id)


def request_id() -> str:
    """The id the API guard gave this request (also in ``X-Request-ID`` and the event)."""
    return REQUEST_ID.get() or time_ordered_id()


class Scoring:
    """Decides on applications with the champion and keeps each decision."""

    def __init__(
        self, spec: ServingSpec, scorer: Scorer, events: EventStore | None, image: str | None
    ) -> None:
        self.spec = spec
        self.scorer = scorer
        self.events = events
        self.image = image

    def score(self, record: dict[str, Any], endpoint: str, client_id: str | None) -> Prediction:
        probability = self.scorer.probability(record)
        decision = self._decide(probability)
        about = self._about()
        self._keep(endpoint, about["request_id"], client_id, [(record, probability, decision)])
        return Prediction(probability=probability, decision=decision, **about)

    def score_batch(self, records: list[dict[str, Any]]) -> BatchPrediction:
        limit = self.spec.limits.max_batch_size
        if len(records) > limit:
            raise PayloadTooLarge(
                f"{len(records)} applications in one batch; the limit is {limit}. Split the batch."
            )
        scores = [float(s) for s in self.scorer.probabilities(records)]
        decisions = [self._decide(score) for score in scores]
        about = self._about()
        self._keep(
            "predict_batch", about["request_id"], None, zip(records, scores, decisions, strict=True)
        )
        items = [
            BatchItem(probability=s, decision=d) for s, d in zip(scores, decisions, strict=True)
        ]
        return BatchPrediction(predictions=items, **about)

    def explain(self, record: dict[str, Any], endpoint: str, client_id: str | None) -> Explanation:
        result = self.scorer.explain(record)
        decision = self._decide(result.probability)
        about = self._about()
        self._keep(
            endpoint, about["request_id"], client_id, [(record, result.probability, decision)]
        )
        return Explanation(
            probability=result.probability,
            decision=decision,
            base_value=result.base_value,
            units=result.units,
            contributions=[
                FeatureContribution(feature=c.feature, value=c.value, shap_value=c.shap_value)
                for c in result.contributions
            ],
            reasons=self.scorer.reasons(result),
            **about,
        )

    def _decide(self, probability: float) -> str:
        decision = self.scorer.decision(probability)
        observe_decision(probability, decision)
        return decision

    def _about(self) -> dict[str, Any]:
        return {
            "threshold": self.spec.threshold,
            "model_name": self.spec.model_name,
            "model_version": self.spec.model_version,
            "request_id": request_id(),
        }

    def _keep(
        self,
        endpoint: str,
        request_id: str,
        client_id: str | None,
        decided: Iterable[tuple[dict[str, Any], float, str]],
    ) -> None:
        """Journal one prediction event per decided application (before the response)."""
        if self.events is None:
            return
        spec = self.spec
        events = [
            {
                "event_time": utc_now(),
                "request_id": request_id,
                "endpoint": endpoint,
                "client_id": client_id,
                "model_name": spec.model_name,
                "model_version": spec.model_version,
                "features": record,
                "probability": float(probability),
                "decision": decision,
                "threshold": spec.threshold,
                "mlflow_run_id": spec.run_id,
                "image": self.image,
            }
            for record, probability, decision in decided
        ]
        self.events.record_many(events)
        JOURNALED.inc(len(events))
