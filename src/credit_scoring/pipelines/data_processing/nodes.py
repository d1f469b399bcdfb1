"""Processing: clean the validated tables and build the model input table.

Every decision learned from the data (duplicate columns, outlier bounds, irrelevant columns,
imputed values) is learned on the rows of the training split only, which is assigned here,
first: no validation or test row shapes a fit. The learned bounds are saved with the model,
so the API applies exactly those.

The nodes take pandas DataFrames (``kedro run``) or Spark DataFrames (``kedro run --env
spark``) and return the same kind: the logic is written once over Narwhals
(``core.frames``), and the steps that need Python run through ``engines.batches``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import narwhals as nw

from credit_scoring.core import frames
from credit_scoring.core.contract import DataContract
from credit_scoring.core.errors import ContractError
from credit_scoring.core.processing import (
    PARAMS_FILE,
    SPLIT_COLUMN,
    SPLIT_DRAW,
    OutlierRule,
    ProcessingParams,
    split_draws,
)
from credit_scoring.engines.batches import ROW_ORDER, map_batches, with_row_order
from credit_scoring.training.imputation import claim_columns, fit_imputer, learned_fill_values

logger = logging.getLogger(__name__)

TRAIN = "train"
Frame = Any  # a pandas or a Spark DataFrame


def _protected(contract: DataContract) -> list[str]:
    target = [contract.target.column] if contract.target else []
    return [contract.pseudonymised_id_column, *target, SPLIT_COLUMN, ROW_ORDER]


def _training_rows(frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
    """The rows a decision may be learned from (all rows of a table without a split)."""
    if SPLIT_COLUMN not in frames.columns(frame):
        return frame
    return frame.filter(nw.col(SPLIT_COLUMN) == TRAIN)


def _count(frame: nw.LazyFrame[Any]) -> int:
    return int(frame.select(nw.len()).collect().item())


def _row(frame: nw.LazyFrame[Any], *exprs: nw.Expr) -> dict[str, Any]:
    """One pass over ``frame`` computing ``exprs`` (aggregates), as a dict."""
    if not exprs:
        return {}
    return frame.select(*exprs).collect().rows(named=True)[0]


def _with(frame: nw.LazyFrame[Any], exprs: list[nw.Expr]) -> nw.LazyFrame[Any]:
    return frame.with_columns(*exprs) if exprs else frame


def deduplicate_rows(applications: Frame) -> Frame:
    """Drop exact duplicate rows (same client, same values), keeping the first."""
    frame = frames.lazy(applications)
    values = [c for c in frames.columns(frame) if c != ROW_ORDER]
    if frames.is_eager(frame):
        out = frame.unique(values, keep="any")  # pandas keeps the first
    else:
        # Spark: one row per distinct set of values, the first in the source's order
        out = frame.group_by(*values).agg(nw.col(ROW_ORDER).min())
    logger.info("%d duplicate row(s) removed", _count(frame) - _count(out))
    return frames.to_native(out)


def assign_splits(
    applications: Frame, data_contract: DataContract, params: ProcessingParams
) -> Frame:
    """Add the ``split`` column (train / validation / test), stratified on the target.

    Each row's draw is a hash of its client's pseudonym and the seed; within each class the
    rows are ranked by draw and the shares cut from the ranks. No row order, no shared
    random state: pandas and Spark assign every client the same split, and all of a
    client's rows fall in one split.
    """
    split = params.split
    draw = partial(
        split_draws,
        id_column=data_contract.pseudonymised_id_column,
        random_state=split.random_state,
    )
    frame = frames.lazy(map_batches(applications, draw, added={SPLIT_DRAW: "float"}))
    target = data_contract.target.column if data_contract.target else None
    strata = [target] if target else []
    rank = nw.col(SPLIT_DRAW).rank("min")
    size = nw.len()
    rank, size = (rank.over(*strata), size.over(*strata)) if strata else (rank.over(), size.over())
    test_cut = (size * split.test_size).round(0)
    validation_cut = (size * (split.test_size + split.validation_size)).round(0)
    label = (
        nw.when(rank <= test_cut)
        .then(nw.lit("test"))
        .otherwise(
            nw.when(rank <= validation_cut).then(nw.lit("validation")).otherwise(nw.lit(TRAIN))
        )
    )
    out = frame.with_columns(label.alias(SPLIT_COLUMN)).drop(SPLIT_DRAW)
    if frames.is_eager(out):
        counts = out.group_by(SPLIT_COLUMN).agg(nw.len()).collect().rows()
        logger.info("split: %s", dict(counts))
    return frames.to_native(out)


def drop_duplicate_columns(applications: Frame) -> dict[str, Any]:
    """Drop columns whose training rows repeat an earlier column exactly; report which.

    Cheap fingerprints (type, missing count, min, max) pick the candidate pairs in one pass;
    a second pass checks each candidate pair value by value.
    """
    frame = frames.lazy(applications)
    rows = _training_rows(frame)
    schema = frame.collect_schema()
    names = [c for c in schema.names() if c != ROW_ORDER]
    numeric = [c for c in names if _is_numeric(schema[c])]
    text = [c for c in names if c not in numeric]
    stats = _row(
        rows,
        *(nw.col(c).null_count().alias(f"{c}\x00n") for c in names),
        *(nw.col(c).min().alias(f"{c}\x00a") for c in numeric),
        *(nw.col(c).max().alias(f"{c}\x00b") for c in numeric),
        *(nw.col(c).n_unique().alias(f"{c}\x00a") for c in text),
    )
    first_by_print: dict[tuple[Any, ...], list[str]] = {}
    candidates: list[tuple[str, str]] = []
    for column in names:
        key = (str(schema[column]), *(stats.get(f"{column}\x00{s}") for s in ("n", "a", "b")))
        earlier = first_by_print.setdefault(key, [])
        candidates += [(column, original) for original in earlier]
        earlier.append(column)

    def differs(a: str, b: str) -> nw.Expr:
        same = (nw.col(a) == nw.col(b)).fill_null(False) | (
            nw.col(a).is_null() & nw.col(b).is_null()
        )
        return (~same).cast(nw.Int64).sum().alias(f"{a}\x00{b}")

    mismatches = _row(rows, *(differs(a, b) for a, b in candidates))
    duplicates: dict[str, str] = {}
    for column, original in candidates:
        fresh = column not in duplicates and original not in duplicates
        if fresh and mismatches[f"{column}\x00{original}"] == 0:
            duplicates[column] = original
    logger.info("duplicate columns dropped: %s", duplicates or "none")
    out = frame.drop(*duplicates) if duplicates else frame
    return {"table": frames.to_native(out), "dropped": duplicates}


def treat_anomalies(applications: Frame, params: ProcessingParams) -> Frame:
    """Replace sentinel values (e.g. DAYS_EMPLOYED = 365243) by null and a flag column."""
    return frames.to_native(frames.flag_anomalies(frames.lazy(applications), params.anomalies))


def _bound_exprs(column: str, rule: OutlierRule) -> list[nw.Expr]:
    values = nw.col(column).cast(frames.F64)
    exprs = [values.count().alias(f"{column}\x00count")]
    if rule.method == "quantile":
        for side, q in (("lower", rule.lower), ("upper", rule.upper)):
            if q is not None:
                exprs.append(values.quantile(q, "linear").alias(f"{column}\x00{side}"))
    elif rule.method == "iqr":
        exprs.append(values.quantile(0.25, "linear").alias(f"{column}\x00q1"))
        exprs.append(values.quantile(0.75, "linear").alias(f"{column}\x00q3"))
    return exprs


def _bounds(column: str, rule: OutlierRule, stats: dict[str, Any]) -> tuple[Any, Any]:
    if rule.method == "fixed" or not stats[f"{column}\x00count"]:
        return rule.lower, rule.upper
    if rule.method == "quantile":
        lower = None if rule.lower is None else float(stats[f"{column}\x00lower"])
        upper = None if rule.upper is None else float(stats[f"{column}\x00upper"])
        return lower, upper
    q1, q3 = float(stats[f"{column}\x00q1"]), float(stats[f"{column}\x00q3"])
    return q1 - rule.factor * (q3 - q1), q3 + rule.factor * (q3 - q1)


def treat_outliers(applications: Frame, params: ProcessingParams) -> dict[str, Any]:
    """Learn each column's bounds on the training rows and apply them to every row.

    Quantiles are exact on both engines (linear interpolation; Spark's ``percentile``).
    Returns the bounds for serving. A rule naming a column the table does not have is an
    error (the session's configuration check catches it before any node runs).
    """
    frame = frames.lazy(applications)
    for column in params.outliers:
        if column not in frames.columns(frame):
            raise ContractError(
                f"data_processing.outliers.{column}: no such column in the table (dropped "
                f"as a duplicate, or not in the data contract). Fix it in {PARAMS_FILE}."
            )
    stats = _row(
        _training_rows(frame),
        *(e for column, rule in params.outliers.items() for e in _bound_exprs(column, rule)),
    )
    bounds: dict[str, dict[str, Any]] = {}
    for column, rule in params.outliers.items():
        lower, upper = _bounds(column, rule, stats)
        bounds[column] = {"lower": lower, "upper": upper, "action": rule.action}
    table = frames.to_native(frames.apply_outlier_bounds(frame, bounds))
    return {"table": table, "bounds": bounds}


def aggregate_table(
    table: Frame, data_contract: DataContract, params: ProcessingParams, table_name: str
) -> Frame:
    """Per-client aggregates of one secondary table, as declared in parameters."""
    spec = params.secondary_aggregations.get(table_name)
    if spec is None:
        raise ContractError(
            f"Secondary table '{table_name}' has no entry under "
            f"data_processing.secondary_aggregations in {PARAMS_FILE}."
        )
    key = data_contract.pseudonymised_id_column
    frame = frames.lazy(table)
    if ROW_ORDER in frames.columns(frame):
        frame = frame.drop(ROW_ORDER)
    return frames.to_native(frames.aggregate_secondary(frame, key, spec, table_name))


def _join_all(
    frame: nw.LazyFrame[Any],
    contract: DataContract,
    params: ProcessingParams,
    aggregates: dict[str, Frame],
) -> nw.LazyFrame[Any]:
    for name, table in aggregates.items():
        agg_spec = params.secondary_aggregations[name]
        count = f"{agg_spec.prefix}{agg_spec.count_column}" if agg_spec.count_column else None
        frame = frames.join_aggregates(
            frame, frames.lazy(table), contract.pseudonymised_id_column, count
        )
    return frame


def build_features(
    applications: Frame,
    data_contract: DataContract,
    params: ProcessingParams,
    **aggregates: Frame,
) -> Frame:
    """Add the domain features and join each secondary table's per-client aggregates."""
    out = frames.add_derived_features(frames.lazy(applications), params.domain_features)
    return frames.to_native(_join_all(out, data_contract, params, aggregates))


def _is_numeric(dtype: Any) -> bool:
    return bool(dtype.is_numeric() or dtype == nw.Boolean)


def drop_irrelevant_columns(
    features: Frame, data_contract: DataContract, params: ProcessingParams
) -> dict[str, Any]:
    """Drop too-sparse, constant and ID-like columns (judged on the training rows).

    ID-like: text, or densely packed integers, with (almost) all values distinct; the
    density test keeps measurements such as DAYS_BIRTH, nearly unique in a small sample but
    spread over a range far wider than the number of rows.
    """
    rules = params.irrelevant_columns
    frame = frames.lazy(features)
    schema = frame.collect_schema()
    keep = set(_protected(data_contract)) | set(rules.keep)
    judged = [c for c in schema.names() if c not in keep]
    distinct = [c for c in judged if schema[c].is_integer() or not _is_numeric(schema[c])]
    ranged = [c for c in judged if _is_numeric(schema[c])]
    stats = _row(
        _training_rows(frame),
        nw.len().alias("\x00rows"),
        *(nw.col(c).null_count().alias(f"{c}\x00n") for c in judged),
        *(nw.col(c).min().alias(f"{c}\x00min") for c in ranged),
        *(nw.col(c).max().alias(f"{c}\x00max") for c in ranged),
        *(nw.col(c).n_unique().alias(f"{c}\x00unique") for c in distinct),
    )
    rows = stats["\x00rows"]
    reasons: dict[str, str] = {}
    for column in judged:
        nulls = stats[f"{column}\x00n"]
        missing = nulls / rows if rows else 0.0
        present = rows - nulls
        lowest, highest = stats.get(f"{column}\x00min"), stats.get(f"{column}\x00max")
        unique = stats.get(f"{column}\x00unique", 0) - (1 if nulls else 0)
        constant = present == 0 or (lowest == highest if column in ranged else unique <= 1)
        if missing > rules.max_missing_fraction:
            reasons[column] = (
                f"too sparse: {missing:.0%} missing > {rules.max_missing_fraction:.0%}"
            )
        elif rules.drop_constant and constant:
            reasons[column] = "constant"
        elif column in distinct and present >= 2:
            if unique / rows < rules.id_like_unique_ratio:
                continue
            if (
                not schema[column].is_integer()
                or (float(highest or 0) - float(lowest or 0) + 1) / unique <= 2.0
            ):
                reasons[column] = "ID-like: (almost) every value distinct"
    logger.info("irrelevant columns dropped: %s", reasons or "none")
    out = frame.drop(*reasons) if reasons else frame
    return {"table": frames.to_native(out), "dropped": reasons}


def impute_missing_values(
    primary: Frame, data_contract: DataContract, params: ProcessingParams
) -> dict[str, Any]:
    """Fill missing values group by group (learned on the training rows); report the groups.

    median / mean / most_frequent / constant are learned as aggregates on either engine;
    knn and iterative fit scikit-learn on the training rows of their (few) columns, brought
    to the driver, and the fitted imputer then runs batch by batch.
    """
    frame = frames.lazy(primary)
    schema = frame.collect_schema()
    protected = _protected(data_contract)
    groups = {g.name: g for g in params.imputation}
    kinds = ((c, _is_numeric(schema[c])) for c in schema.names())
    assigned = claim_columns(kinds, params.imputation, protected)
    training = _training_rows(frame)
    fills: dict[str, Any] = {}
    for name, cols in assigned.items():
        group = groups[name]
        if cols and group.strategy not in ("knn", "iterative"):
            fills.update(learned_fill_values(training, cols, group))
    frame = _with(frame, [nw.col(c).fill_null(v) for c, v in fills.items() if v is not None])
    native = frames.to_native(frame)
    for name, cols in assigned.items():
        group = groups[name]
        if cols and group.strategy in ("knn", "iterative"):
            sample = frames.to_pandas(_training_rows(frames.lazy(native)).select(*cols))
            imputer = fit_imputer(sample, [group], exclude=[])
            native = map_batches(native, partial(_apply_fitted, imputer=imputer, columns=cols))
    frame = frames.lazy(native)
    numeric = [c for c in schema.names() if c not in protected and _is_numeric(schema[c])]
    frame = _with(frame, [nw.col(c).cast(frames.F64) for c in numeric])
    left_over = _row(
        frame, *(nw.col(c).null_count().alias(c) for c in schema.names() if c not in protected)
    )
    left = [c for c, n in left_over.items() if n]
    if left:
        raise ContractError(
            f"Column(s) {left} still have missing values: no imputation group claims them. "
            f"Add a group (e.g. select: numeric) to data_processing.imputation in {PARAMS_FILE}."
        )
    report = {name: cols for name, cols in assigned.items() if cols}
    return {"table": frames.to_native(frame), "groups": report}


def _apply_fitted(batch: Any, imputer: Any, columns: list[str]) -> Any:
    """A fitted scikit-learn imputer on one batch's ``columns`` (row by row: batch-safe)."""
    out = batch.copy()
    if len(out):
        filled = imputer.transform(batch[columns].astype("float64"))
        out[columns] = filled[columns].to_numpy(dtype="float64")
    return out


def summarise_processing(
    validated: Frame,
    model_input: Frame,
    duplicate_columns: dict[str, str],
    outlier_bounds: dict[str, Any],
    irrelevant_columns: dict[str, str],
    imputation_groups: dict[str, list[str]],
) -> dict[str, Any]:
    """One JSON report of what processing did, for people and for DVC metrics."""
    rows_in, rows_out = _count(frames.lazy(validated)), _count(frames.lazy(model_input))
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "duplicate_rows_removed": rows_in - rows_out,
        "columns_out": len([c for c in frames.columns(frames.lazy(model_input)) if c != ROW_ORDER]),
        "duplicate_columns_dropped": duplicate_columns,
        "irrelevant_columns_dropped": irrelevant_columns,
        "outlier_bounds": outlier_bounds,
        "imputation_groups": imputation_groups,
    }


def build_client_features(
    applications: Frame,
    data_contract: DataContract,
    params: ProcessingParams,
    **aggregates: Frame,
) -> Frame:
    """The client feature store: what the API needs to score a known client by id.

    The contract's columns as validated (the API applies the same row-level processing as
    training), one row per client (the latest application), plus the per-client aggregates
    of each secondary table. No target, no raw id: only the pseudonym.
    """
    id_column = data_contract.pseudonymised_id_column
    frame = frames.lazy(applications)
    kept = [c for c in data_contract.columns if c in frames.columns(frame)]
    if frames.is_eager(frame):  # pandas: the table's own order
        latest = frame.collect().unique(id_column, keep="last", maintain_order=True).lazy()
    else:
        ordered = with_row_order(applications)
        latest = ordered.filter(nw.col(ROW_ORDER) == nw.col(ROW_ORDER).max().over(id_column))
    out = _join_all(latest.select(id_column, *kept), data_contract, params, aggregates)
    return frames.to_native(out)
