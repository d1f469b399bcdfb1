"""Missing-value imputation by column group, declared in parameters.

``build_imputer`` turns the ``imputation`` list of ``parameters_data_processing.yml`` into an
unfitted scikit-learn transformer. The processing pipeline uses it to publish an imputed
table; the model pipeline fits the same declaration on its training split only, so the
validation and test rows never leak into the fitted values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import narwhals as nw
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers the class)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from credit_scoring.core.encoding import nan_for_missing
from credit_scoring.core.errors import ContractError
from credit_scoring.core.processing import PARAMS_FILE, ImputationGroup


def group_estimator(group: ImputationGroup) -> Any:
    """The scikit-learn imputer of one declared group."""
    if group.strategy == "knn":
        return KNNImputer(n_neighbors=group.n_neighbors)
    if group.strategy == "iterative":
        return IterativeImputer(max_iter=group.max_iter, random_state=0)
    if group.strategy == "constant":
        return SimpleImputer(strategy="constant", fill_value=group.fill_value)
    return SimpleImputer(strategy=group.strategy)


def claim_columns(
    columns: Iterable[tuple[str, bool]], groups: list[ImputationGroup], exclude: list[str]
) -> dict[str, list[str]]:
    """Columns per group from ``(name, is_numeric)`` pairs (any engine's schema): each column
    goes to the first group that claims it."""
    assigned: dict[str, list[str]] = {g.name: [] for g in groups}
    for column, is_numeric in columns:
        if column in exclude:
            continue
        for group in groups:
            if group.matches(column, is_numeric):
                if group.strategy in ("median", "mean", "knn", "iterative") and not is_numeric:
                    raise ContractError(
                        f"Imputation group '{group.name}' ({group.strategy}) claims the "
                        f"non-numeric column '{column}'; use most_frequent/constant for it "
                        f"in data_processing.imputation in {PARAMS_FILE}."
                    )
                assigned[group.name].append(column)
                break
    return assigned


def assign_columns(
    frame: pd.DataFrame, groups: list[ImputationGroup], exclude: list[str]
) -> dict[str, list[str]]:
    """Columns per group of a pandas table: each column goes to the first group that claims it."""
    kinds = ((c, pd.api.types.is_numeric_dtype(frame[c])) for c in frame.columns)
    return claim_columns(kinds, groups, exclude)


def build_imputer(
    frame: pd.DataFrame, groups: list[ImputationGroup], exclude: list[str]
) -> ColumnTransformer:
    """An unfitted transformer that imputes each group and passes other columns through."""
    assigned = assign_columns(frame, groups, exclude)
    transformers = [
        (g.name, group_estimator(g), assigned[g.name]) for g in groups if assigned[g.name]
    ]
    imputer = ColumnTransformer(
        transformers, remainder="passthrough", verbose_feature_names_out=False
    )
    return imputer.set_output(transform="pandas")


def fit_imputer(
    frame: pd.DataFrame, groups: list[ImputationGroup], exclude: list[str]
) -> ColumnTransformer:
    """Build the imputer for ``frame``'s columns and fit it on ``frame``."""
    return build_imputer(frame, groups, exclude).fit(nan_for_missing(frame))


def apply_imputer(
    imputer: ColumnTransformer, frame: pd.DataFrame, exclude: list[str]
) -> pd.DataFrame:
    """Transform and restore the original column order; imputed numbers are float64."""
    out = imputer.transform(nan_for_missing(frame))[list(frame.columns)]
    for column in frame.columns:
        if column not in exclude and pd.api.types.is_numeric_dtype(frame[column]):
            out[column] = pd.to_numeric(out[column]).astype("float64")
    return out


def learned_fill_values(
    training: nw.LazyFrame[Any], columns: list[str], group: ImputationGroup
) -> dict[str, Any]:
    """The value each column's missing entries get, learned on ``training`` (any engine).

    median: the linear-interpolation median (numpy's); most_frequent: the most frequent
    value, the smallest of ties (scikit-learn's rule); constant: ``fill_value``.
    """
    if group.strategy == "constant":
        return dict.fromkeys(columns, group.fill_value)
    if group.strategy in ("median", "mean"):
        exprs = [
            nw.col(c).cast(nw.Float64).quantile(0.5, "linear").alias(c)
            if group.strategy == "median"
            else nw.col(c).cast(nw.Float64).mean().alias(c)
            for c in columns
        ]
        return dict(training.select(*exprs).collect().rows(named=True)[0])
    values: dict[str, Any] = {}
    for column in columns:  # most_frequent: one small group-by per column
        counts = (
            training.filter(~nw.col(column).is_null())
            .group_by(column)
            .agg(nw.len().alias("_n"))
            .sort(["_n", column], descending=[True, False])
            .head(1)
            .collect()
            .rows()
        )
        values[column] = counts[0][0] if counts else None
    return values
