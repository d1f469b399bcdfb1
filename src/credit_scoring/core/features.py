"""Feature engineering shared by the training pipeline and the scoring API.

Everything here works row by row (or per client, for secondary tables) from a declaration in
``conf/base/parameters_data_processing.yml``, so training and serving compute the same
features from the same code and a fork declares its own features without touching Python.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from credit_scoring.core.errors import typed_section
from credit_scoring.core.schema import FrozenStrict

PARAMS_FILE = "conf/base/parameters_data_processing.yml"

Scalar = str | int | float | bool
Operation = Literal[
    "ratio", "difference", "sum", "product", "equals", "greater_than", "less_than", "is_missing"
]
AggFunc = Literal["sum", "mean", "min", "max", "std", "median", "nunique"]


class DerivedFeature(FrozenStrict):
    """``left <op> right`` (a column) or ``left <op> value`` (a constant)."""

    op: Operation
    left: str
    right: str | None = None
    value: Scalar | None = None

    @model_validator(mode="after")
    def _one_operand(self) -> DerivedFeature:
        if self.op == "is_missing":
            if self.right is not None or self.value is not None:
                raise ValueError("'is_missing' takes only 'left'")
        elif (self.right is None) == (self.value is None):
            raise ValueError(f"'{self.op}' needs exactly one of 'right' (a column) or 'value'")
        return self


class Anomaly(FrozenStrict):
    """A sentinel value that means 'not applicable' (e.g. DAYS_EMPLOYED = 365243)."""

    column: str
    value: float
    flag_column: str


class SecondaryAggregation(FrozenStrict):
    """How one secondary table becomes per-client columns."""

    prefix: str
    derived: dict[str, DerivedFeature] = Field(default_factory=dict)
    aggregations: dict[str, list[AggFunc]]
    count_column: str | None = "COUNT"


class FeatureSpec(FrozenStrict):
    """The row-level part of ``parameters_data_processing.yml``."""

    anomalies: list[Anomaly] = Field(default_factory=list)
    domain_features: dict[str, DerivedFeature] = Field(default_factory=dict)
    secondary_aggregations: dict[str, SecondaryAggregation] = Field(default_factory=dict)


def load_feature_spec(params: dict[str, Any] | FeatureSpec) -> FeatureSpec:
    """Build the spec; a mistake names the key and the file to fix."""
    return typed_section(FeatureSpec, params, "data_processing", PARAMS_FILE)


# --- whole tables: pandas wrappers of the one implementation in core.frames --------------
# (Imported when called: the scoring service uses the declarations and RowTransformer only.)


def compute_feature(df: pd.DataFrame, feature: DerivedFeature) -> pd.Series:
    """One derived column. Division by zero gives NaN, never ±inf."""
    from credit_scoring.core import frames

    out = frames.lazy(df).select(frames.derived_expr(feature).alias("_value"))
    return pd.Series(out.collect().to_native()["_value"].to_numpy(), index=df.index)


def add_derived_features(
    df: pd.DataFrame, features: dict[str, DerivedFeature], where: str = "domain_features"
) -> pd.DataFrame:
    """Return a copy of ``df`` with each declared feature added, in declaration order."""
    from credit_scoring.core import frames

    return frames.to_native(frames.add_derived_features(frames.lazy(df), features, where))


def flag_anomalies(df: pd.DataFrame, anomalies: list[Anomaly]) -> pd.DataFrame:
    """Replace each sentinel by NaN and keep the information in a 0/1 flag column."""
    from credit_scoring.core import frames

    return frames.to_native(frames.flag_anomalies(frames.lazy(df), anomalies))


def apply_outlier_bounds(df: pd.DataFrame, bounds: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Apply bounds learned in training: ``{column: {lower, upper, action}}``."""
    from credit_scoring.core import frames

    return frames.to_native(frames.apply_outlier_bounds(frames.lazy(df), bounds))


def aggregate_secondary(
    table: pd.DataFrame, key: str, spec: SecondaryAggregation, name: str
) -> pd.DataFrame:
    """Per-client aggregates of a secondary table: a ``key`` column, one row per client."""
    from credit_scoring.core import frames

    return frames.to_native(frames.aggregate_secondary(frames.lazy(table), key, spec, name))


def join_aggregates(
    applications: pd.DataFrame,
    aggregates: pd.DataFrame,
    id_column: str,
    count_column: str | None,
) -> pd.DataFrame:
    """Left-join aggregates on the client id; a client with no rows gets a count of 0."""
    from credit_scoring.core import frames

    joined = frames.join_aggregates(
        frames.lazy(applications), frames.lazy(aggregates), id_column, count_column
    )
    return frames.to_native(joined)


def transform_rows(
    rows: pd.DataFrame, spec: FeatureSpec, outlier_bounds: dict[str, dict[str, Any]]
) -> pd.DataFrame:
    """The row-level part of processing in one call, for scoring new applications.

    Same order as the pipeline's nodes: sentinels to NaN + flag, the outlier bounds learned
    in training, then the declared domain features. Secondary-table aggregates are inputs
    here (the API receives them, or reads them from the client feature store).
    """
    flagged = flag_anomalies(rows, spec.anomalies)
    bounded = apply_outlier_bounds(flagged, outlier_bounds)
    return add_derived_features(bounded, spec.domain_features)


# --- one record at a time: the API's hot path ---------------------------------------------


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _compute_scalar(record: dict[str, Any], feature: DerivedFeature) -> float:
    """``compute_feature`` for one record, on Python floats (same IEEE arithmetic)."""
    left = record.get(feature.left)
    missing = left is None or (isinstance(left, float) and math.isnan(left))
    if feature.op == "is_missing":
        return float(missing)
    right: Any = record.get(feature.right) if feature.right is not None else feature.value
    if feature.op in ("equals", "greater_than", "less_than"):
        if missing:
            return math.nan
        if right is None or (isinstance(right, float) and math.isnan(right)):
            return 0.0  # pandas compares with a missing value as False
        if feature.op == "equals":
            return float(left == right)
        return float(left > right) if feature.op == "greater_than" else float(left < right)
    a, b = _number(left), _number(right)
    if feature.op == "ratio":
        if b == 0.0 or math.isnan(a) or math.isnan(b):
            return math.nan
        out = a / b
        return out if math.isfinite(out) else math.nan
    if feature.op == "difference":
        return a - b
    if feature.op == "sum":
        return a + b
    return a * b


class RowTransformer:
    """``transform_rows`` + ``model_input`` for one record, without pandas (tens of µs).

    Built once from the same declarations as the pipeline; returns the model-input vector in
    the model's feature order (category codes for LightGBM, NaN for missing). Tests check it
    against the pipeline's own output, so the API has no training/serving skew.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        outlier_bounds: dict[str, dict[str, Any]],
        features: list[str],
        categories: dict[str, list[str]],
    ) -> None:
        self.spec = spec
        self.bounds = [
            (column, b.get("lower"), b.get("upper"), b.get("action", "clip"))
            for column, b in outlier_bounds.items()
        ]
        self.features = list(features)
        self.codes = {
            c: {v: float(i) for i, v in enumerate(vals)} for c, vals in categories.items()
        }

    def record(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The processed record: sentinels flagged, bounds applied, domain features added."""
        row = dict(raw)
        for anomaly in self.spec.anomalies:
            if anomaly.column in row:
                value = row[anomaly.column]
                hit = value is not None and _number(value) == anomaly.value
                row[anomaly.flag_column] = float(hit)
                row[anomaly.column] = math.nan if hit else _number(value)
        for column, lower, upper, action in self.bounds:
            if column not in row:
                continue
            value = _number(row[column])
            if action == "clip":
                if lower is not None and value < lower:
                    value = float(lower)
                if upper is not None and value > upper:
                    value = float(upper)
            elif (lower is not None and value < lower) or (upper is not None and value > upper):
                value = math.nan
            row[column] = value
        for name, feature in self.spec.domain_features.items():
            row[name] = _compute_scalar(row, feature)
        return row

    def vector(self, raw: dict[str, Any]) -> np.ndarray:
        """The model-input row (shape ``(1, n_features)``, float64)."""
        row = self.record(raw)
        out = np.empty((1, len(self.features)), dtype=np.float64)
        for i, name in enumerate(self.features):
            value = row.get(name)
            codes = self.codes.get(name)
            if codes is not None:
                out[0, i] = codes.get(value, math.nan) if value is not None else math.nan
            else:
                out[0, i] = _number(value)
        return out
