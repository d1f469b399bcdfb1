"""Missing-value imputation by column group, declared in parameters.

``build_imputer`` turns the ``imputation`` list of ``parameters_data_processing.yml`` into an
unfitted scikit-learn transformer. The processing pipeline uses it to publish an imputed
table; the model pipeline fits the same declaration on its training split only, so the
validation and test rows never leak into the fitted values.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator
from sklearn.compose import ColumnTransformer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (registers the class)
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from credit_scoring.contracts import ContractError, config_error

Strategy = Literal["median", "mean", "most_frequent", "constant", "knn", "iterative"]


class ImputationGroup(BaseModel):
    """One group: which columns (names/globs or a kind) and how to fill them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    columns: list[str] | None = None
    select: Literal["numeric", "categorical"] | None = None
    strategy: Strategy
    fill_value: str | float | None = None
    n_neighbors: int = 5
    max_iter: int = 10

    @model_validator(mode="after")
    def _check(self) -> ImputationGroup:
        if (self.columns is None) == (self.select is None):
            raise ValueError("give exactly one of 'columns' (names or globs) or 'select'")
        if self.strategy == "constant" and self.fill_value is None:
            raise ValueError("strategy 'constant' needs a 'fill_value'")
        return self

    def matches(self, column: str, is_numeric: bool) -> bool:
        if self.columns is not None:
            return any(fnmatch(column, pattern) for pattern in self.columns)
        return is_numeric if self.select == "numeric" else not is_numeric

    def estimator(self) -> Any:
        if self.strategy == "knn":
            return KNNImputer(n_neighbors=self.n_neighbors)
        if self.strategy == "iterative":
            return IterativeImputer(max_iter=self.max_iter, random_state=0)
        if self.strategy == "constant":
            return SimpleImputer(strategy="constant", fill_value=self.fill_value)
        return SimpleImputer(strategy=self.strategy)


def load_groups(raw: list[dict[str, Any]] | list[ImputationGroup]) -> list[ImputationGroup]:
    try:
        return TypeAdapter(list[ImputationGroup]).validate_python(raw)
    except ValidationError as exc:
        raise config_error(
            exc, "data_processing.imputation", "conf/base/parameters_data_processing.yml"
        ) from None


def assign_columns(
    frame: pd.DataFrame, groups: list[ImputationGroup], exclude: list[str]
) -> dict[str, list[str]]:
    """Columns per group: each column goes to the first group that claims it."""
    assigned: dict[str, list[str]] = {g.name: [] for g in groups}
    for column in frame.columns:
        if column in exclude:
            continue
        is_numeric = pd.api.types.is_numeric_dtype(frame[column])
        for group in groups:
            if group.matches(column, is_numeric):
                if group.strategy in ("median", "mean", "knn", "iterative") and not is_numeric:
                    raise ContractError(
                        f"Imputation group '{group.name}' ({group.strategy}) claims the "
                        f"non-numeric column '{column}'; use most_frequent/constant for it."
                    )
                assigned[group.name].append(column)
                break
    return assigned


def build_imputer(
    frame: pd.DataFrame, groups: list[ImputationGroup], exclude: list[str]
) -> ColumnTransformer:
    """An unfitted transformer that imputes each group and passes other columns through."""
    assigned = assign_columns(frame, groups, exclude)
    transformers = [(g.name, g.estimator(), assigned[g.name]) for g in groups if assigned[g.name]]
    imputer = ColumnTransformer(
        transformers, remainder="passthrough", verbose_feature_names_out=False
    )
    return imputer.set_output(transform="pandas")


def nan_for_missing(frame: pd.DataFrame) -> pd.DataFrame:
    # scikit-learn's imputers look for NaN; text columns read from Parquet hold None.
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


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
