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

from credit_scoring.core.errors import ContractError, typed_section
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


def _require(df: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ContractError(
            f"{where} uses column(s) {missing} that the table does not have. Fix the "
            f"declaration in {PARAMS_FILE} or add the column(s) to the data contract."
        )


def compute_feature(df: pd.DataFrame, feature: DerivedFeature) -> pd.Series:
    """One derived column. Division by zero gives NaN, never ±inf."""
    left = df[feature.left]
    if feature.op == "is_missing":
        return left.isna().astype("float64")
    right: Any = df[feature.right] if feature.right is not None else feature.value
    if feature.op in ("equals", "greater_than", "less_than"):
        compare = {"equals": left.eq, "greater_than": left.gt, "less_than": left.lt}[feature.op]
        result = compare(right).astype("float64")
        return result.where(left.notna())
    left_num = pd.to_numeric(left, errors="coerce").astype("float64")
    right_num = (
        pd.to_numeric(right, errors="coerce").astype("float64")
        if isinstance(right, pd.Series)
        else float(right)
    )
    if feature.op == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = left_num / right_num
        return out.replace([np.inf, -np.inf], np.nan)
    if feature.op == "difference":
        return left_num - right_num
    if feature.op == "sum":
        return left_num + right_num
    return left_num * right_num


def add_derived_features(
    df: pd.DataFrame, features: dict[str, DerivedFeature], where: str = "domain_features"
) -> pd.DataFrame:
    """Return a copy of ``df`` with each declared feature added, in declaration order."""
    out = df.copy()
    for name, feature in features.items():
        operands = [feature.left] + ([feature.right] if feature.right else [])
        _require(out, operands, f"{where}.{name}")
        out[name] = compute_feature(out, feature)
    return out


def flag_anomalies(df: pd.DataFrame, anomalies: list[Anomaly]) -> pd.DataFrame:
    """Replace each sentinel by NaN and keep the information in a 0/1 flag column."""
    out = df.copy()
    for anomaly in anomalies:
        if anomaly.column not in out.columns:
            continue  # column dropped or absent in this fork: nothing to fix
        is_anomaly = out[anomaly.column].eq(anomaly.value)
        out[anomaly.flag_column] = is_anomaly.astype("float64")
        out[anomaly.column] = out[anomaly.column].astype("float64").mask(is_anomaly)
    return out


def apply_outlier_bounds(df: pd.DataFrame, bounds: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Apply bounds learned in training: ``{column: {lower, upper, action}}``.

    ``action: clip`` moves a value to the nearest bound, ``set_missing`` makes it NaN.
    """
    out = df.copy()
    for column, bound in bounds.items():
        if column not in out.columns:
            continue
        values = out[column].astype("float64")
        lower, upper = bound.get("lower"), bound.get("upper")
        if bound.get("action", "clip") == "clip":
            out[column] = values.clip(lower, upper)
        else:
            outside = pd.Series(False, index=values.index)
            if lower is not None:
                outside |= values < lower
            if upper is not None:
                outside |= values > upper
            out[column] = values.mask(outside)
    return out


def aggregate_secondary(
    table: pd.DataFrame, key: str, spec: SecondaryAggregation, name: str
) -> pd.DataFrame:
    """Per-client aggregates of a secondary table, indexed by ``key``."""
    enriched = add_derived_features(table, spec.derived, where=f"secondary_aggregations.{name}")
    _require(enriched, [key, *spec.aggregations], f"secondary_aggregations.{name}")
    grouped = enriched.groupby(key, sort=True)
    parts = []
    for column, funcs in spec.aggregations.items():
        values = grouped[column].agg(list(funcs))
        values.columns = [f"{spec.prefix}{column}_{func.upper()}" for func in funcs]
        parts.append(values)
    if spec.count_column:
        parts.append(grouped.size().rename(f"{spec.prefix}{spec.count_column}").to_frame())
    return pd.concat(parts, axis=1).astype("float64")


def join_aggregates(
    applications: pd.DataFrame,
    aggregates: pd.DataFrame,
    id_column: str,
    count_column: str | None,
) -> pd.DataFrame:
    """Left-join aggregates on the client id; a client with no rows gets a count of 0."""
    out = applications.join(aggregates, on=id_column)
    if count_column and count_column in out.columns:
        out[count_column] = out[count_column].fillna(0.0)
    return out


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
