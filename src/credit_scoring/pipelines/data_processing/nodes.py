"""Processing: clean the validated tables and build the model input table.

Every decision learned from the data (duplicate columns, outlier bounds, irrelevant columns,
imputed values) is learned on the rows of the training split only, which is assigned here,
first: no validation or test row shapes a fit. The learned bounds are saved with the model,
so the API applies exactly those.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from credit_scoring.core.contract import DataContract
from credit_scoring.core.errors import ContractError
from credit_scoring.core.features import (
    add_derived_features,
    aggregate_secondary,
    apply_outlier_bounds,
    flag_anomalies,
    join_aggregates,
)
from credit_scoring.core.processing import (
    PARAMS_FILE,
    SPLIT_COLUMN,
    OutlierRule,
    ProcessingParams,
)
from credit_scoring.training.imputation import apply_imputer, fit_imputer

logger = logging.getLogger(__name__)

TRAIN = "train"


def _protected(contract: DataContract) -> list[str]:
    target = [contract.target.column] if contract.target else []
    return [contract.pseudonymised_id_column, *target, SPLIT_COLUMN]


def _training_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows a decision may be learned from (all rows of a table without a split)."""
    if SPLIT_COLUMN not in table.columns:
        return table
    return table[table[SPLIT_COLUMN] == TRAIN]


def deduplicate_rows(applications: pd.DataFrame) -> pd.DataFrame:
    """Drop exact duplicate rows (same client, same values), keeping the first."""
    out = applications.drop_duplicates(keep="first").reset_index(drop=True)
    logger.info("%d duplicate row(s) removed", len(applications) - len(out))
    return out


def assign_splits(
    applications: pd.DataFrame, data_contract: DataContract, params: ProcessingParams
) -> pd.DataFrame:
    """Add the ``split`` column (train / validation / test): stratified, seeded, done first.

    The same client always lands in the same split, so the processing steps that learn from
    data can learn from the training rows only.
    """
    split = params.split
    target = data_contract.target.column if data_contract.target else None
    stratify = applications[target] if target else None
    rest, test = train_test_split(
        applications.index,
        test_size=split.test_size,
        stratify=stratify,
        random_state=split.random_state,
    )
    share = split.validation_size / (1 - split.test_size)
    _, validation = train_test_split(
        rest,
        test_size=share,
        stratify=stratify.loc[rest] if stratify is not None else None,
        random_state=split.random_state,
    )
    out = applications.copy()
    out[SPLIT_COLUMN] = "train"
    out.loc[validation, SPLIT_COLUMN] = "validation"
    out.loc[test, SPLIT_COLUMN] = "test"
    logger.info("split: %s", out[SPLIT_COLUMN].value_counts().to_dict())
    return out


def drop_duplicate_columns(applications: pd.DataFrame) -> dict[str, Any]:
    """Drop columns whose training rows repeat an earlier column exactly; report which."""
    first_by_digest: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    rows = _training_rows(applications)
    for column in applications.columns:
        values = pd.util.hash_pandas_object(rows[column], index=False).to_numpy()
        digest = hashlib.sha256(values.tobytes()).hexdigest()
        original = first_by_digest.setdefault(digest, column)
        if original != column and rows[column].equals(rows[original]):
            duplicates[column] = original
    logger.info("duplicate columns dropped: %s", duplicates or "none")
    return {"table": applications.drop(columns=list(duplicates)), "dropped": duplicates}


def treat_anomalies(applications: pd.DataFrame, params: ProcessingParams) -> pd.DataFrame:
    """Replace sentinel values (e.g. DAYS_EMPLOYED = 365243) by NaN and a flag column."""
    return flag_anomalies(applications, params.anomalies)


def _bounds(series: pd.Series, rule: OutlierRule) -> tuple[float | None, float | None]:
    values = series.astype("float64").dropna()
    if rule.method == "fixed" or values.empty:
        return rule.lower, rule.upper
    if rule.method == "quantile":
        lower = None if rule.lower is None else float(values.quantile(rule.lower))
        upper = None if rule.upper is None else float(values.quantile(rule.upper))
        return lower, upper
    q1, q3 = values.quantile([0.25, 0.75])
    return float(q1 - rule.factor * (q3 - q1)), float(q3 + rule.factor * (q3 - q1))


def treat_outliers(applications: pd.DataFrame, params: ProcessingParams) -> dict[str, Any]:
    """Learn each column's bounds on the training rows and apply them to every row.

    Returns the bounds for serving. A rule naming a column the table does not have is an
    error (the session's configuration check catches it before any node runs).
    """
    bounds: dict[str, dict[str, Any]] = {}
    rows = _training_rows(applications)
    for column, rule in params.outliers.items():
        if column not in applications.columns:
            raise ContractError(
                f"data_processing.outliers.{column}: no such column in the table (dropped "
                f"as a duplicate, or not in the data contract). Fix it in {PARAMS_FILE}."
            )
        lower, upper = _bounds(rows[column], rule)
        bounds[column] = {"lower": lower, "upper": upper, "action": rule.action}
    return {"table": apply_outlier_bounds(applications, bounds), "bounds": bounds}


def aggregate_table(
    table: pd.DataFrame, data_contract: DataContract, params: ProcessingParams, table_name: str
) -> pd.DataFrame:
    """Per-client aggregates of one secondary table, as declared in parameters."""
    spec = params.secondary_aggregations.get(table_name)
    if spec is None:
        raise ContractError(
            f"Secondary table '{table_name}' has no entry under "
            f"data_processing.secondary_aggregations in {PARAMS_FILE}."
        )
    return aggregate_secondary(table, data_contract.pseudonymised_id_column, spec, table_name)


def build_features(
    applications: pd.DataFrame,
    data_contract: DataContract,
    params: ProcessingParams,
    **aggregates: pd.DataFrame,
) -> pd.DataFrame:
    """Add the domain features and join each secondary table's per-client aggregates."""
    out = add_derived_features(applications, params.domain_features)
    for name, table in aggregates.items():
        agg_spec = params.secondary_aggregations[name]
        count = f"{agg_spec.prefix}{agg_spec.count_column}" if agg_spec.count_column else None
        out = join_aggregates(out, table, data_contract.pseudonymised_id_column, count)
    return out


def drop_irrelevant_columns(
    features: pd.DataFrame, data_contract: DataContract, params: ProcessingParams
) -> dict[str, Any]:
    """Drop too-sparse, constant and ID-like columns (judged on the training rows)."""
    rules = params.irrelevant_columns
    keep = set(_protected(data_contract)) | set(rules.keep)
    reasons: dict[str, str] = {}
    rows = _training_rows(features)
    for column in features.columns:
        if column in keep:
            continue
        series = rows[column]
        missing = float(series.isna().mean())
        if missing > rules.max_missing_fraction:
            reasons[column] = (
                f"too sparse: {missing:.0%} missing > {rules.max_missing_fraction:.0%}"
            )
        elif rules.drop_constant and series.nunique(dropna=True) <= 1:
            reasons[column] = "constant"
        elif _is_id_like(series, rules.id_like_unique_ratio):
            reasons[column] = "ID-like: (almost) every value distinct"
    logger.info("irrelevant columns dropped: %s", reasons or "none")
    return {"table": features.drop(columns=list(reasons)), "dropped": reasons}


def _is_id_like(series: pd.Series, unique_ratio: float) -> bool:
    """Text, or densely packed integers, with (almost) all values distinct.

    The density test keeps measurements such as DAYS_BIRTH, which are nearly unique in a
    small sample but spread over a range far wider than the number of rows.
    """
    values = series.dropna()
    distinct = values.nunique()
    if len(values) < 2 or distinct / len(series) < unique_ratio:
        return False
    if pd.api.types.is_integer_dtype(values):
        span = float(values.max()) - float(values.min()) + 1
        return span / distinct <= 2.0
    return not pd.api.types.is_numeric_dtype(values)


def impute_missing_values(
    primary: pd.DataFrame, data_contract: DataContract, params: ProcessingParams
) -> dict[str, Any]:
    """Fill missing values group by group (fitted on the training rows); report the groups."""
    groups = list(params.imputation)
    protected = _protected(data_contract)
    imputer = fit_imputer(_training_rows(primary), groups, exclude=protected)
    table = apply_imputer(imputer, primary, exclude=protected)
    report = {name: columns for name, _, columns in imputer.transformers_ if name != "remainder"}
    left = [c for c in table.columns if c not in protected and table[c].isna().any()]
    if left:
        raise ContractError(
            f"Column(s) {left} still have missing values: no imputation group claims them. "
            f"Add a group (e.g. select: numeric) to data_processing.imputation in {PARAMS_FILE}."
        )
    return {"table": table, "groups": report}


def summarise_processing(
    validated: pd.DataFrame,
    model_input: pd.DataFrame,
    duplicate_columns: dict[str, str],
    outlier_bounds: dict[str, Any],
    irrelevant_columns: dict[str, str],
    imputation_groups: dict[str, list[str]],
) -> dict[str, Any]:
    """One JSON report of what processing did, for people and for DVC metrics."""
    return {
        "rows_in": len(validated),
        "rows_out": len(model_input),
        "duplicate_rows_removed": len(validated) - len(model_input),
        "columns_out": len(model_input.columns),
        "duplicate_columns_dropped": duplicate_columns,
        "irrelevant_columns_dropped": irrelevant_columns,
        "outlier_bounds": outlier_bounds,
        "imputation_groups": imputation_groups,
    }


def build_client_features(
    applications: pd.DataFrame,
    data_contract: DataContract,
    params: ProcessingParams,
    **aggregates: pd.DataFrame,
) -> pd.DataFrame:
    """The client feature store: what the API needs to score a known client by id.

    The contract's columns as validated (the API applies the same row-level processing as
    training), one row per client (the latest application), plus the per-client aggregates
    of each secondary table. No target, no raw id: only the pseudonym.
    """
    id_column = data_contract.pseudonymised_id_column
    columns = [c for c in data_contract.columns if c in applications.columns]
    out = applications[[id_column, *columns]].drop_duplicates(id_column, keep="last")
    for name, table in aggregates.items():
        agg_spec = params.secondary_aggregations[name]
        count = f"{agg_spec.prefix}{agg_spec.count_column}" if agg_spec.count_column else None
        out = join_aggregates(out, table, id_column, count)
    return out.reset_index(drop=True)
