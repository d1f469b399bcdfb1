"""The declared transformations, written once over Narwhals: the same code runs on pandas
(the default engine) and, lazily, on PySpark (``kedro run --env spark``).

Every function takes and returns a ``narwhals.LazyFrame``; ``lazy`` wraps a pandas or Spark
DataFrame and ``to_native`` unwraps the result into the caller's kind (a pandas DataFrame,
computed; a Spark DataFrame, still lazy). Missing values are nulls on both engines (NaN in a
pandas float column). Where the engines differ by default (a sum of nothing, a comparison
with a missing value, a division by zero) the expression says which answer it wants, so both
give the same numbers.
"""

from __future__ import annotations

from typing import Any

import narwhals as nw

from credit_scoring.core.errors import ContractError
from credit_scoring.core.features import (
    PARAMS_FILE,
    Anomaly,
    DerivedFeature,
    SecondaryAggregation,
)

F64 = nw.Float64
# The source's row order, carried by the Spark engine's tables (a pandas table has its index).
ROW_ORDER = "_row"


def lazy(native: Any) -> nw.LazyFrame[Any]:
    """A pandas or Spark DataFrame (or a narwhals frame) as a narwhals LazyFrame."""
    frame = nw.from_native(native)
    return frame.lazy() if isinstance(frame, nw.DataFrame) else frame


def is_eager(frame: nw.LazyFrame[Any]) -> bool:
    """True on pandas (computed in this process), False on Spark (a plan run by executors)."""
    return frame.implementation.is_pandas_like()


def to_native(frame: nw.LazyFrame[Any]) -> Any:
    """The pandas DataFrame (computed, fresh RangeIndex) or the Spark DataFrame (lazy)."""
    if is_eager(frame):
        return _numpy_floats(frame.collect().to_native().reset_index(drop=True))
    return frame.to_native()


def _numpy_floats(table: Any) -> Any:
    """pandas' nullable ``Float64`` (a cast from a nullable integer) as numpy ``float64``,
    missing as NaN: what the models, scikit-learn and the API's row transformer read."""
    nullable = [c for c, dtype in table.dtypes.items() if str(dtype) == "Float64"]
    if nullable:
        table[nullable] = table[nullable].astype("float64")
    return table


def to_pandas(native: Any) -> Any:
    """Any supported frame as a pandas DataFrame (a Spark one is collected to the driver), in
    the source's row order where the table carries it (``_row``, then dropped)."""
    frame = lazy(native)
    if ROW_ORDER in columns(frame):
        frame = frame.sort(ROW_ORDER).drop(ROW_ORDER)
    out = frame.collect(backend="pandas").to_native()
    return out.reset_index(drop=True)


def columns(frame: nw.LazyFrame[Any]) -> list[str]:
    return list(frame.collect_schema().names())


def require(frame: nw.LazyFrame[Any], needed: list[str], where: str) -> None:
    missing = [c for c in needed if c not in columns(frame)]
    if missing:
        raise ContractError(
            f"{where} uses column(s) {missing} that the table does not have. Fix the "
            f"declaration in {PARAMS_FILE} or add the column(s) to the data contract."
        )


def _operand(feature: DerivedFeature) -> nw.Expr:
    if feature.right is not None:
        return nw.col(feature.right)
    return nw.lit(feature.value)


def derived_expr(feature: DerivedFeature) -> nw.Expr:
    """One derived column as an expression. Division by zero gives null, never ±inf; a
    comparison is null where ``left`` is missing and 0 where only ``right`` is."""
    left = nw.col(feature.left)
    if feature.op == "is_missing":
        return left.is_null().cast(F64)
    if feature.op in ("equals", "greater_than", "less_than"):
        right = _operand(feature)
        compared = {
            "equals": left == right,
            "greater_than": left > right,
            "less_than": left < right,
        }[feature.op]
        return nw.when(~left.is_null()).then(compared.fill_null(False).cast(F64))
    a = left.cast(F64)
    b = nw.col(feature.right).cast(F64) if feature.right else nw.lit(float(feature.value), F64)  # type: ignore[arg-type]
    if feature.op == "ratio":
        quotient = a / b
        return nw.when((b != 0) & quotient.is_finite()).then(quotient)
    if feature.op == "difference":
        return a - b
    if feature.op == "sum":
        return a + b
    return a * b


def add_derived_features(
    frame: nw.LazyFrame[Any], features: dict[str, DerivedFeature], where: str = "domain_features"
) -> nw.LazyFrame[Any]:
    """Each declared feature added, in declaration order (a feature may use an earlier one)."""
    for name, feature in features.items():
        operands = [feature.left] + ([feature.right] if feature.right else [])
        require(frame, operands, f"{where}.{name}")
        frame = frame.with_columns(derived_expr(feature).alias(name))
    return frame


def flag_anomalies(frame: nw.LazyFrame[Any], anomalies: list[Anomaly]) -> nw.LazyFrame[Any]:
    """Each sentinel becomes null, and a 0/1 flag column keeps the information."""
    present = set(columns(frame))
    for anomaly in anomalies:
        if anomaly.column not in present:
            continue  # column dropped or absent in this fork: nothing to fix
        value = nw.col(anomaly.column).cast(F64)
        hit = (value == anomaly.value).fill_null(False)
        frame = frame.with_columns(
            hit.cast(F64).alias(anomaly.flag_column),
            nw.when(~hit).then(value).alias(anomaly.column),
        )
    return frame


def apply_outlier_bounds(
    frame: nw.LazyFrame[Any], bounds: dict[str, dict[str, Any]]
) -> nw.LazyFrame[Any]:
    """Bounds learned in training, ``{column: {lower, upper, action}}``: ``clip`` moves a value
    to the nearest bound, ``set_missing`` makes it null."""
    present = set(columns(frame))
    exprs = []
    for column, bound in bounds.items():
        if column not in present:
            continue
        value = nw.col(column).cast(F64)
        lower, upper = bound.get("lower"), bound.get("upper")
        if bound.get("action", "clip") == "clip":
            exprs.append(value.clip(lower, upper).alias(column))
            continue
        outside = nw.lit(False)
        if lower is not None:
            outside = outside | (value < lower).fill_null(False)
        if upper is not None:
            outside = outside | (value > upper).fill_null(False)
        exprs.append(nw.when(~outside).then(value).alias(column))
    return frame.with_columns(*exprs) if exprs else frame


def _aggregations(column: str, func: str, name: str) -> tuple[list[nw.Expr], nw.Expr]:
    """The simple aggregations of one output column (pandas runs only simple ones fast) and
    the expression that finishes it from them."""
    values = nw.col(column)
    out = nw.col(name)
    if func == "sum":  # the sum of no values is 0 (pandas), not null (Spark)
        return [values.sum().alias(name)], out.fill_null(0).cast(F64)
    if func == "nunique":  # distinct values, a missing value not counted
        nulls = f"{name}__nulls"
        first = [values.n_unique().alias(name), values.null_count().alias(nulls)]
        return first, (out - (nw.col(nulls) > 0).cast(nw.Int64)).cast(F64)
    if func == "std":
        return [values.std(ddof=1).alias(name)], out.cast(F64)
    return [getattr(values, func)().alias(name)], out.cast(F64)


def aggregate_secondary(
    table: nw.LazyFrame[Any], key: str, spec: SecondaryAggregation, name: str
) -> nw.LazyFrame[Any]:
    """Per-client aggregates of a secondary table: one row per ``key`` (sorted on pandas)."""
    enriched = add_derived_features(table, spec.derived, where=f"secondary_aggregations.{name}")
    require(enriched, [key, *spec.aggregations], f"secondary_aggregations.{name}")
    first: list[nw.Expr] = []
    finish: list[nw.Expr] = []
    names: list[str] = []
    for column, funcs in spec.aggregations.items():
        for func in funcs:
            output = f"{spec.prefix}{column}_{func.upper()}"
            simple, final = _aggregations(column, func, output)
            first += simple
            finish.append(final.alias(output))
            names.append(output)
    if spec.count_column:
        count = f"{spec.prefix}{spec.count_column}"
        first.append(nw.len().alias(count))
        finish.append(nw.col(count).cast(F64))
        names.append(count)
    out = enriched.group_by(key, drop_null_keys=True).agg(*first)
    out = out.with_columns(*finish).select(key, *names)
    return out.sort(key) if is_eager(out) else out  # Spark keeps no order anyway


def join_aggregates(
    applications: nw.LazyFrame[Any],
    aggregates: nw.LazyFrame[Any],
    id_column: str,
    count_column: str | None,
) -> nw.LazyFrame[Any]:
    """Left-join aggregates on the client id; a client with no rows gets a count of 0."""
    out = applications.join(aggregates, on=id_column, how="left")
    if count_column and count_column in columns(out):
        out = out.with_columns(nw.col(count_column).fill_null(0.0))
    return out
