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

    # --- a whole table at once: batch scoring ---------------------------------------------

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The model-input rows of a whole table (``(len(frame), n_features)``, float64).

        Column by column with NumPy, each step mirroring ``record``/``vector`` exactly (the
        same IEEE operations in the same order), so a row scores to the same bits as the API
        scores it one record at a time; tests compare the two on real and edge-case rows.
        """
        n = len(frame)
        row: dict[str, Any] = {str(c): frame[c] for c in frame.columns}
        for anomaly in self.spec.anomalies:
            if anomaly.column in row:
                values = _numbers(row[anomaly.column], n)
                hit = values == anomaly.value  # NaN (missing) is never a hit
                row[anomaly.flag_column] = hit.astype(np.float64)
                row[anomaly.column] = np.where(hit, np.nan, values)
        for column, lower, upper, action in self.bounds:
            if column not in row:
                continue
            values = _numbers(row[column], n)
            if action == "clip":
                if lower is not None:
                    values = np.where(values < lower, float(lower), values)
                if upper is not None:
                    values = np.where(values > upper, float(upper), values)
            else:
                outside = np.zeros(n, dtype=bool)
                if lower is not None:
                    outside |= values < lower
                if upper is not None:
                    outside |= values > upper
                values = np.where(outside, np.nan, values)
            row[column] = values
        for name, feature in self.spec.domain_features.items():
            row[name] = _compute_column(row, feature, n)
        out = np.empty((n, len(self.features)), dtype=np.float64)
        for i, name in enumerate(self.features):
            column_values = row.get(name)
            codes = self.codes.get(name)
            if column_values is None:
                out[:, i] = np.nan
            elif codes is not None:
                out[:, i] = _codes(column_values, codes, n)
            else:
                out[:, i] = _numbers(column_values, n)
        return out


def _missing(values: Any, n: int) -> np.ndarray:
    """``None`` or a float NaN, as ``_compute_scalar`` tests it, for a whole column."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return np.isnan(values)
    return np.asarray(pd.isna(pd.Series(values) if not isinstance(values, pd.Series) else values))


def _numbers(values: Any, n: int) -> np.ndarray:
    """``_number`` for a whole column: float64, NaN where a value is missing or not a number."""
    if values is None:
        return np.full(n, np.nan)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.fromiter((_number(v) for v in series.to_numpy(dtype=object)), np.float64, n)


def _objects(values: Any) -> np.ndarray:
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    return series.to_numpy(dtype=object)


def _codes(values: Any, codes: dict[Any, float], n: int) -> np.ndarray:
    """``vector``'s category codes for a whole column: NaN for missing or unknown values
    (a hash lookup per value, as ``dict.get``, done by pandas in C)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    mapped = series.astype(object).map(codes)
    return mapped.to_numpy(dtype=np.float64, na_value=np.nan)


def _compute_column(row: dict[str, Any], feature: DerivedFeature, n: int) -> np.ndarray:
    """``_compute_scalar`` for a whole column (same IEEE arithmetic, same missing rules)."""
    left = row.get(feature.left)
    left_missing = np.ones(n, dtype=bool) if left is None else _missing(left, n)
    if feature.op == "is_missing":
        return left_missing.astype(np.float64)
    right: Any = row.get(feature.right) if feature.right is not None else feature.value
    if feature.op in ("equals", "greater_than", "less_than"):
        lefts = np.full(n, None, dtype=object) if left is None else _objects(left)
        if feature.right is None:
            rights = np.full(n, right, dtype=object)
            right_missing = np.full(
                n, right is None or (isinstance(right, float) and right != right)
            )
        else:
            rights = np.full(n, None, dtype=object) if right is None else _objects(right)
            right_missing = np.ones(n, dtype=bool) if right is None else _missing(right, n)
        compare = {"equals": _eq, "greater_than": _gt, "less_than": _lt}[feature.op]
        pairs = zip(lefts, rights, strict=True)
        result = np.fromiter((compare(a, b) for a, b in pairs), np.float64, n)
        result[right_missing] = 0.0  # pandas compares with a missing value as False
        result[left_missing] = np.nan
        return result
    a = _numbers(left, n)
    b = _numbers(right, n) if feature.right is not None else np.full(n, _number(right))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if feature.op == "ratio":
            out = a / b
            return np.where((b == 0.0) | ~np.isfinite(out), np.nan, out)
        if feature.op == "difference":
            return a - b
        if feature.op == "sum":
            return a + b
        return a * b


def _eq(a: Any, b: Any) -> float:
    return float(a == b)


def _gt(a: Any, b: Any) -> float:
    try:
        return float(a > b)
    except TypeError:
        return math.nan


def _lt(a: Any, b: Any) -> float:
    try:
        return float(a < b)
    except TypeError:
        return math.nan
