"""Everything the running service needs, frozen at build time next to the model.

``make build`` writes one ``serving_spec.json`` into the BentoML model: the MLflow version,
threshold and features of the champion plus the contract, the feature declarations and the
outlier bounds it was trained with. The service reads only this file and the native model, so
it never needs the MLflow server or the project's ``conf/``.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from credit_scoring.core.contract import DataContract, build_request_model, load_contract
from credit_scoring.core.features import FeatureSpec, RowTransformer, load_feature_spec
from credit_scoring.core.schema import Strict

SPEC_FILE = "serving_spec.json"
MODEL_DIR = "mlflow_model"
# Logged by each training run next to the model: what the scoring API is built from ...
SERVING_ARTIFACTS = "serving"
MODEL_CARD_ARTIFACT = "model_card.json"
# ... and what the monitoring pipeline compares production traffic with (this version's own)
REFERENCE_ARTIFACT = "monitoring/reference.parquet"
# Written into the bento's build context by `make build`: the tag of the model it serves.
PACKAGED_MODEL_FILE = "credit_scoring/serving/packaged_model.txt"
# Rows for the SHAP of non-LightGBM champions: JSON (with the columns' types), not Parquet,
# so that the service's image needs no pyarrow (150 MB).
BACKGROUND_FILE = "background.json"
# The lineage of a served model: its MLflow run, the commit of the code that trained it and
# the hash of the data it was trained on (tags of the run, see credit_scoring.core.lineage).
LINEAGE_KEYS = ("mlflow_run_id", "git_commit", "data_md5")


class ServingLimits(Strict):
    max_batch_size: int = Field(1000, ge=1, description="most applications per /predict_batch")
    max_body_bytes: int = Field(
        2_000_000, ge=1024, description="larger request bodies are refused with HTTP 413"
    )
    top_reasons: int = Field(3, ge=1, le=20, description="reasons given in plain words")


class EventSettings(Strict):
    retention_days: int = Field(365, ge=1, description="`make purge-events` deletes older events")


class AuditSettings(Strict):
    retention_days: int = Field(
        365, ge=1, description="`make purge-events` deletes older access audit records"
    )


class ServingConfig(Strict):
    """``serving`` in ``conf/base/parameters_serving.yml``."""

    limits: ServingLimits = Field(default_factory=ServingLimits)
    events: EventSettings = Field(default_factory=EventSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)


class ServingSpec(BaseModel):
    """The frozen contract between the training side and the service."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str
    model_version: str
    run_id: str | None = None
    candidate: str
    kind: str
    threshold: float
    features: list[str]
    categories: dict[str, list[str]] = Field(default_factory=dict)
    data_contract: dict[str, Any]
    feature_spec: dict[str, Any]
    outlier_bounds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    limits: ServingLimits = Field(default_factory=ServingLimits)
    # Where the model comes from (``LINEAGE_KEYS``), read from its MLflow run at build time;
    # the service reports it on /metrics and in every event, the image in its labels.
    lineage: dict[str, str] = Field(default_factory=dict)
    # The model's card for advisors (``MODEL_CARD_ARTIFACT`` of its run): test metrics, the
    # business costs behind the threshold, global feature importance.
    card: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ServingSpec:
        return cls.model_validate_json(Path(path).read_text())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(mode="json"), indent=2))

    @cached_property
    def contract(self) -> DataContract:  # built once: /explain reads it for every reason
        return load_contract(self.data_contract)

    @cached_property
    def processing(self) -> FeatureSpec:
        return load_feature_spec(self.feature_spec)

    def aggregate_columns(self) -> list[str]:
        """The per-client columns of the secondary tables (inputs next to the application)."""
        return aggregate_columns(self.processing)

    def count_columns(self) -> list[str]:
        spec = self.processing
        return [
            f"{agg.prefix}{agg.count_column}"
            for agg in spec.secondary_aggregations.values()
            if agg.count_column
        ]

    def transformer(self) -> RowTransformer:
        return RowTransformer(self.processing, self.outlier_bounds, self.features, self.categories)

    def request_model(self) -> type[BaseModel]:
        """One application, as the API accepts it: the contract's columns + the aggregates."""
        counts = set(self.count_columns())
        fields: dict[str, tuple[Any, Any]] = {}
        for name in self.aggregate_columns():
            if name in counts:
                fields[name] = (
                    float,
                    Field(0.0, ge=0, description="number of records (0 = no history)"),
                )
            else:
                fields[name] = (
                    float | None,
                    Field(None, description="per-client aggregate (null = no history)"),
                )
        return build_request_model(self.contract.columns, "Application", extra_fields=fields)

    def request_columns(self) -> list[str]:
        return [*self.contract.columns, *self.aggregate_columns()]

    def describe(self, feature: str) -> str:
        """A feature's name in plain words."""
        column = self.contract.columns.get(feature)
        if column is not None and column.description:
            return column.description
        return feature.replace("_", " ").capitalize()


def aggregate_columns(spec: FeatureSpec) -> list[str]:
    columns = []
    for agg in spec.secondary_aggregations.values():
        for column, funcs in agg.aggregations.items():
            columns += [f"{agg.prefix}{column}_{func.upper()}" for func in funcs]
        if agg.count_column:
            columns.append(f"{agg.prefix}{agg.count_column}")
    return columns


def save_background(frame: pd.DataFrame, path: str | Path) -> None:
    frame.reset_index(drop=True).to_json(path, orient="table", index=False, double_precision=15)


def load_background(path: str | Path) -> pd.DataFrame:
    return pd.read_json(path, orient="table", precise_float=True)


def json_records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as JSON-ready request bodies: Python types, null for missing, only ``columns``."""
    present = [c for c in columns if c in frame.columns]
    subset = frame[present].astype(object)
    subset = subset.where(subset.notna(), None)
    return [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in subset.to_dict(orient="records")
    ]
