"""Response models of the API (request models are generated from the data contract)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

CLIENT_ID_PATTERN = r"^[0-9a-f]{64}$"
ClientId = Annotated[
    str,
    Field(
        pattern=CLIENT_ID_PATTERN,
        description="pseudonymised client id (HMAC-SHA256, 64 hex characters); never a raw id",
    ),
]


class Prediction(BaseModel):
    probability: float = Field(
        ge=0,
        le=1,
        description="risk score: the model's probability of default (class-weighted, so "
        "it ranks clients well but is not a calibrated default rate)",
    )
    decision: Literal["accept", "refuse"] = Field(
        description="refuse when probability >= threshold"
    )
    threshold: float = Field(description="cost-optimal threshold chosen in training")
    model_name: str
    model_version: str = Field(description="MLflow registry version of the champion")
    request_id: str = Field(description="id of the stored prediction event")


class BatchItem(BaseModel):
    probability: float = Field(ge=0, le=1)
    decision: Literal["accept", "refuse"]


class BatchPrediction(BaseModel):
    predictions: list[BatchItem] = Field(description="in the order of the applications")
    threshold: float
    model_name: str
    model_version: str
    request_id: str


class FeatureContribution(BaseModel):
    feature: str
    value: float | str | None = Field(description="the processed value the model saw")
    shap_value: float = Field(description="signed contribution; > 0 raises the risk")


class Explanation(Prediction):
    base_value: float = Field(description="the model's average output, in `units`")
    units: Literal["log_odds", "probability"]
    contributions: list[FeatureContribution] = Field(
        description="every feature, sorted by absolute contribution"
    )
    reasons: list[str] = Field(description="the largest contributions in plain words")
