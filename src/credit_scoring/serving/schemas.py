"""Response models of the API, and of its errors (request models are generated from the data
contract): the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

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


class ClientPath(BaseModel):
    client_id: ClientId


class ClientPrediction(Prediction):
    observed_at: str | None = Field(
        description="when the client's stored features were observed (ISO 8601, UTC)"
    )


class ClientExplanation(Explanation):
    observed_at: str | None = Field(
        description="when the client's stored features were observed (ISO 8601, UTC)"
    )


class ClientPage(BaseModel):
    total: int = Field(description="clients matching the filters")
    limit: int
    offset: int
    columns: list[str] = Field(description="the columns listed for each client")
    clients: list[dict[str, Any]] = Field(
        description="each client's id, observed_at and listed columns, in the order of the ids"
    )


class ComparisonGroup(BaseModel):
    total: int = Field(description="clients matching the filters")
    sample_size: int = Field(description="clients in `rows`")
    features: list[str]
    threshold: float
    rows: list[dict[str, Any]] = Field(
        description="each sampled client's chosen features, probability and decision"
    )


class FeatureImportance(BaseModel):
    feature: str
    importance: float


class ColumnUse(BaseModel):
    column: str
    description: str
    sensitive: bool = Field(description="a protected attribute: never a filter")
    filterable: bool


class Filters(BaseModel):
    categories: dict[str, list[str]] = Field(description="eq:<COLUMN> filters and their values")
    numeric: list[str] = Field(description="columns of the min:<COLUMN> and max:<COLUMN> filters")


class ModelCard(BaseModel):
    model_name: str
    model_version: str
    candidate: str
    threshold: float
    lineage: dict[str, str]
    test_metrics: dict[str, Any]
    dummy_metrics: dict[str, Any]
    cost: dict[str, Any]
    importance_method: str | None
    global_importance: list[FeatureImportance] = Field(description="the 25 largest, largest first")
    data_used: list[ColumnUse]
    filters: Filters


class FieldProblem(BaseModel):
    field: str = Field(description="path of the field, dotted")
    rule: str = Field(description="the rule that failed")
    message: str


class ApiError(BaseModel):
    """Every refusal's body."""

    error: str = Field(description="what went wrong and how to fix it")
    errors: list[FieldProblem] = Field(
        default_factory=list, description="one entry per invalid field"
    )
    request_id: str | None = Field(None, description="the id in the X-Request-ID header")
