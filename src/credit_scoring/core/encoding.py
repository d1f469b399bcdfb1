"""How a model reads a processed row: category codes for the tree boosters (LightGBM, XGBoost),
NaN for missing values."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

ModelKind = Literal["dummy", "logistic_regression", "lightgbm", "xgboost"]
# Kinds that read text columns as category codes and explain themselves with exact TreeSHAP.
TREE_KINDS: tuple[ModelKind, ...] = ("lightgbm", "xgboost")


def category_codes(
    frame: pd.DataFrame, declared: dict[str, list[Any]] | None = None
) -> dict[str, list[str]]:
    """Categories per text column: the contract's allowed list, else those seen in training."""
    declared = declared or {}
    codes = {}
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            seen = sorted(frame[column].dropna().astype(str).unique())
            codes[column] = [str(v) for v in declared.get(column, seen)]
    return codes


def encode_categories(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Text columns to fixed integer codes (unknown or missing -> NaN), as the boosters read them."""
    out = frame.copy()
    for column, values in categories.items():
        mapping = {value: float(i) for i, value in enumerate(values)}
        out[column] = out[column].map(mapping).astype("float64")
    return out


def nan_for_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """scikit-learn's imputers look for NaN; text columns read from Parquet hold None."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].astype(object).where(out[column].notna(), np.nan)
    return out


def model_input(
    frame: pd.DataFrame, kind: ModelKind, categories: dict[str, list[str]]
) -> pd.DataFrame:
    """The boosters read category codes; scikit-learn models read NaN (not None) for missing."""
    if kind in TREE_KINDS:
        return encode_categories(frame, categories)
    return nan_for_missing(frame)
