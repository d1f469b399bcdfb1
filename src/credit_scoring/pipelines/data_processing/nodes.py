"""Processing: clean the validated tables and build the model input table."""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from credit_scoring.contracts import ContractError, config_error, load_contract
from credit_scoring.features import (
    FeatureSpec,
    add_derived_features,
    aggregate_secondary,
    apply_outlier_bounds,
    flag_anomalies,
    join_aggregates,
    load_feature_spec,
)
from credit_scoring.imputation import apply_imputer, fit_imputer, load_groups

logger = logging.getLogger(__name__)

PARAMS_FILE = "conf/base/parameters_data_processing.yml"


class OutlierRule(BaseModel):
    """How to bound one column: learned quantiles, an IQR fence, or fixed values."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["quantile", "iqr", "fixed"]
    lower: float | None = None
    upper: float | None = None
    factor: float = 3.0
    action: Literal["clip", "set_missing"] = "clip"

    @model_validator(mode="after")
    def _check(self) -> OutlierRule:
        if self.method == "quantile":
            for q in (self.lower, self.upper):
                if q is not None and not 0.0 <= q <= 1.0:
                    raise ValueError("quantile bounds must lie in [0, 1]")
        return self


class IrrelevantColumns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_missing_fraction: float = Field(0.6, ge=0.0, le=1.0)
    id_like_unique_ratio: float = Field(0.95, gt=0.0, le=1.0)
    drop_constant: bool = True
    keep: list[str] = Field(default_factory=list)


class ProcessingParams(BaseModel):
    """``data_processing`` in ``parameters_data_processing.yml``: every key is checked."""

    model_config = ConfigDict(extra="forbid")

    anomalies: list[dict[str, Any]] = Field(default_factory=list)
    outliers: dict[str, OutlierRule] = Field(default_factory=dict)
    domain_features: dict[str, Any] = Field(default_factory=dict)
    secondary_aggregations: dict[str, Any] = Field(default_factory=dict)
    irrelevant_columns: IrrelevantColumns = Field(default_factory=lambda: IrrelevantColumns())
    imputation: list[dict[str, Any]] = Field(default_factory=list)

    def feature_spec(self) -> FeatureSpec:
        return load_feature_spec(
            {
                "anomalies": self.anomalies,
                "domain_features": self.domain_features,
                "secondary_aggregations": self.secondary_aggregations,
            }
        )


def _settings(params: dict[str, Any]) -> ProcessingParams:
    try:
        return ProcessingParams.model_validate(params)
    except ValidationError as exc:
        raise config_error(exc, "data_processing", PARAMS_FILE) from None


def _protected(data_contract: dict[str, Any]) -> list[str]:
    contract = load_contract(data_contract)
    target = [contract.target.column] if contract.target else []
    return [contract.pseudonymised_id_column, *target]


def deduplicate_rows(applications: pd.DataFrame) -> pd.DataFrame:
    """Drop exact duplicate rows (same client, same values), keeping the first."""
    out = applications.drop_duplicates(keep="first").reset_index(drop=True)
    logger.info("%d duplicate row(s) removed", len(applications) - len(out))
    return out


def drop_duplicate_columns(applications: pd.DataFrame) -> dict[str, Any]:
    """Drop columns whose values repeat an earlier column exactly; report which."""
    first_by_digest: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    for column in applications.columns:
        values = pd.util.hash_pandas_object(applications[column], index=False).to_numpy()
        digest = hashlib.sha256(values.tobytes()).hexdigest()
        original = first_by_digest.setdefault(digest, column)
        if original != column and applications[column].equals(applications[original]):
            duplicates[column] = original
    logger.info("duplicate columns dropped: %s", duplicates or "none")
    return {"table": applications.drop(columns=list(duplicates)), "dropped": duplicates}


def treat_anomalies(applications: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Replace sentinel values (e.g. DAYS_EMPLOYED = 365243) by NaN and a flag column."""
    return flag_anomalies(applications, _settings(params).feature_spec().anomalies)


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


def treat_outliers(applications: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Learn each column's bounds by its rule and apply them; return the bounds for serving."""
    bounds: dict[str, dict[str, Any]] = {}
    for column, rule in _settings(params).outliers.items():
        if column not in applications.columns:
            logger.info("outlier rule for absent column %s skipped", column)
            continue
        lower, upper = _bounds(applications[column], rule)
        bounds[column] = {"lower": lower, "upper": upper, "action": rule.action}
    return {"table": apply_outlier_bounds(applications, bounds), "bounds": bounds}


def aggregate_table(
    table: pd.DataFrame, data_contract: dict[str, Any], params: dict[str, Any], table_name: str
) -> pd.DataFrame:
    """Per-client aggregates of one secondary table, as declared in parameters."""
    contract = load_contract(data_contract)
    spec = _settings(params).feature_spec().secondary_aggregations.get(table_name)
    if spec is None:
        raise ContractError(
            f"Secondary table '{table_name}' has no entry under "
            f"data_processing.secondary_aggregations in {PARAMS_FILE}."
        )
    return aggregate_secondary(table, contract.pseudonymised_id_column, spec, table_name)


def build_features(
    applications: pd.DataFrame,
    data_contract: dict[str, Any],
    params: dict[str, Any],
    **aggregates: pd.DataFrame,
) -> pd.DataFrame:
    """Add the domain features and join each secondary table's per-client aggregates."""
    contract = load_contract(data_contract)
    spec = _settings(params).feature_spec()
    out = add_derived_features(applications, spec.domain_features)
    for name, table in aggregates.items():
        agg_spec = spec.secondary_aggregations[name]
        count = f"{agg_spec.prefix}{agg_spec.count_column}" if agg_spec.count_column else None
        out = join_aggregates(out, table, contract.pseudonymised_id_column, count)
    return out


def drop_irrelevant_columns(
    features: pd.DataFrame, data_contract: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Drop too-sparse, constant and ID-like columns; report each with its reason."""
    rules = _settings(params).irrelevant_columns
    keep = set(_protected(data_contract)) | set(rules.keep)
    reasons: dict[str, str] = {}
    for column in features.columns:
        if column in keep:
            continue
        series = features[column]
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
    primary: pd.DataFrame, data_contract: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Fill missing values group by group, as declared; report each column's group."""
    groups = load_groups(_settings(params).imputation)
    protected = _protected(data_contract)
    imputer = fit_imputer(primary, groups, exclude=protected)
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
    data_contract: dict[str, Any],
    params: dict[str, Any],
    **aggregates: pd.DataFrame,
) -> pd.DataFrame:
    """The client feature store: what the API needs to score a known client by id.

    The contract's columns as validated (the API applies the same row-level processing as
    training), one row per client (the latest application), plus the per-client aggregates
    of each secondary table. No target, no raw id: only the pseudonym.
    """
    contract = load_contract(data_contract)
    spec = _settings(params).feature_spec()
    id_column = contract.pseudonymised_id_column
    columns = [c for c in contract.columns if c in applications.columns]
    out = applications[[id_column, *columns]].drop_duplicates(id_column, keep="last")
    for name, table in aggregates.items():
        agg_spec = spec.secondary_aggregations[name]
        count = f"{agg_spec.prefix}{agg_spec.count_column}" if agg_spec.count_column else None
        out = join_aggregates(out, table, id_column, count)
    return out.reset_index(drop=True)
