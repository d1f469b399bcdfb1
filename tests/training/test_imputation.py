"""Imputation groups declared in parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_scoring.core.errors import ContractError
from credit_scoring.core.processing import ImputationGroup, load_processing
from credit_scoring.training.imputation import apply_imputer, assign_columns, fit_imputer


def load_groups(raw: list[dict]) -> list[ImputationGroup]:
    """The groups as the start-up check parses them (``data_processing.imputation``)."""
    return load_processing({"imputation": raw}).imputation


FRAME = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d", "e"],
        "S_1": [0.1, 0.2, np.nan, 0.4, 0.5],
        "S_2": [0.2, 0.4, 0.6, np.nan, 1.0],
        "AMT": [1.0, np.nan, 3.0, 100.0, 5.0],
        "CNT": [np.nan, 1.0, 2.0, 3.0, np.nan],
        "CAT": ["x", None, "y", "x", "x"],
    }
)


def _impute(groups):
    loaded = load_groups(groups)
    imputer = fit_imputer(FRAME, loaded, exclude=["id"])
    return apply_imputer(imputer, FRAME, exclude=["id"])


@pytest.mark.parametrize("strategy", ["median", "mean", "knn", "iterative", "most_frequent"])
def test_numeric_strategies_fill_every_gap(strategy):
    out = _impute(
        [
            {"name": "all", "select": "numeric", "strategy": strategy},
            {"name": "c", "select": "categorical", "strategy": "most_frequent"},
        ]
    )
    assert not out.drop(columns="id").isna().any().any()
    assert out["AMT"].iloc[0] == 1.0  # observed values are kept
    assert FRAME["AMT"].isna().sum() == 1  # the input is not mutated


def test_groups_apply_first_match_with_their_own_strategy():
    out = _impute(
        [
            {"name": "scores", "columns": ["S_*"], "strategy": "median"},
            {"name": "counts", "columns": ["CNT"], "strategy": "constant", "fill_value": 0},
            {
                "name": "cats",
                "select": "categorical",
                "strategy": "constant",
                "fill_value": "Unknown",
            },
            {"name": "rest", "select": "numeric", "strategy": "median"},
        ]
    )
    assert out.loc[2, "S_1"] == pytest.approx(0.3)
    assert out["CNT"].tolist() == [0.0, 1.0, 2.0, 3.0, 0.0]
    assert out.loc[1, "CAT"] == "Unknown"
    assert out.loc[1, "AMT"] == pytest.approx(4.0)  # median of 1, 3, 100, 5
    assert list(out.columns) == list(FRAME.columns)


def test_numeric_strategy_on_text_column_is_refused_with_the_group_named():
    groups = load_groups([{"name": "oops", "columns": ["CAT"], "strategy": "median"}])
    with pytest.raises(ContractError, match=r"'oops'.*'CAT'"):
        assign_columns(FRAME, groups, exclude=[])


@pytest.mark.parametrize(
    "group",
    [
        {"name": "g", "strategy": "median"},
        {"name": "g", "select": "numeric", "strategy": "constant"},
        {"name": "g", "select": "numeric", "strategy": "mode"},
    ],
)
def test_bad_group_declarations_are_refused(group):
    with pytest.raises(ContractError, match=r"data_processing\.imputation\.0"):
        load_groups([group])
