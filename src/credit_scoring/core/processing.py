"""The typed declaration of ``data_processing`` (``conf/base/parameters_data_processing.yml``).

Cleaning rules (sentinels, outliers, irrelevant columns), the row-level domain features, the
secondary-table aggregations and the imputation groups. The pipelines learn and apply them;
the API applies the row-level part with the bounds learned in training (``features``).
"""

from __future__ import annotations

import hashlib
from fnmatch import fnmatch
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from credit_scoring.core.errors import typed_section
from credit_scoring.core.features import (
    Anomaly,
    DerivedFeature,
    FeatureSpec,
    SecondaryAggregation,
)
from credit_scoring.core.schema import FrozenStrict

PARAMS_FILE = "conf/base/parameters_data_processing.yml"
ImputationStrategy = Literal["median", "mean", "most_frequent", "constant", "knn", "iterative"]


class OutlierRule(FrozenStrict):
    """How to bound one column: learned quantiles, an IQR fence, or fixed values."""

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


# The column data_processing adds first (train | validation | test), read by data_science.
SPLIT_COLUMN = "split"


class SplitParams(FrozenStrict):
    """Stratified train / validation / test shares, assigned before anything is learned."""

    test_size: float = Field(0.2, gt=0, lt=0.5)
    validation_size: float = Field(0.2, gt=0, lt=0.5)
    random_state: int = 42


# The column holding each row's draw for the split (dropped once the split is assigned).
SPLIT_DRAW = "_split_draw"


def split_draws(batch: pd.DataFrame, id_column: str, random_state: int) -> pd.DataFrame:
    """Each row's draw in [0, 1) for the split: a hash of its client's pseudonym and the seed.

    Row-local and order-free, so pandas and Spark give every row the same draw, and all the
    rows of one client the same draw (a client never straddles train and test).
    """
    digests = b"".join(
        hashlib.sha256(f"{random_state}:{value}".encode()).digest()[:8]
        for value in batch[id_column]
    )
    top_bits = np.frombuffer(digests, dtype=">u8") >> np.uint64(11)  # 53 bits: exact in float
    out = batch.copy()
    out[SPLIT_DRAW] = top_bits.astype("float64") / float(2**53)
    return out


class IrrelevantColumns(FrozenStrict):
    max_missing_fraction: float = Field(0.6, ge=0.0, le=1.0)
    id_like_unique_ratio: float = Field(0.95, gt=0.0, le=1.0)
    drop_constant: bool = True
    keep: list[str] = Field(default_factory=list)


class ImputationGroup(FrozenStrict):
    """One group: which columns (names/globs or a kind) and how to fill them."""

    name: str
    columns: list[str] | None = None
    select: Literal["numeric", "categorical"] | None = None
    strategy: ImputationStrategy
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


class ProcessingParams(FrozenStrict):
    """``data_processing`` in ``parameters_data_processing.yml``: every key is checked."""

    split: SplitParams = Field(default_factory=lambda: SplitParams())
    anomalies: list[Anomaly] = Field(default_factory=list)
    outliers: dict[str, OutlierRule] = Field(default_factory=dict)
    domain_features: dict[str, DerivedFeature] = Field(default_factory=dict)
    secondary_aggregations: dict[str, SecondaryAggregation] = Field(default_factory=dict)
    irrelevant_columns: IrrelevantColumns = Field(default_factory=lambda: IrrelevantColumns())
    imputation: list[ImputationGroup] = Field(default_factory=list)

    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(
            anomalies=self.anomalies,
            domain_features=self.domain_features,
            secondary_aggregations=self.secondary_aggregations,
        )


def load_processing(raw: dict[str, Any] | ProcessingParams) -> ProcessingParams:
    """Build the typed section; a mistake names the key and the file to fix."""
    return typed_section(ProcessingParams, raw, "data_processing", PARAMS_FILE)
