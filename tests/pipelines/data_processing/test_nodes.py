"""Processing nodes, one by one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_scoring.core.contract import DataContract
from credit_scoring.core.errors import ContractError
from credit_scoring.core.processing import ProcessingParams, SplitParams, load_processing
from credit_scoring.pipelines.data_processing.nodes import (
    aggregate_table,
    assign_splits,
    build_features,
    deduplicate_rows,
    drop_duplicate_columns,
    drop_irrelevant_columns,
    impute_missing_values,
    treat_anomalies,
    treat_outliers,
)

CONTRACT = DataContract.model_validate(
    {
        "id_column": "cid",
        "pseudonymised_id_column": "client_id",
        "target": {"column": "TARGET"},
        "columns": {"X": {"dtype": "float"}},
    }
)


def test_deduplicate_rows_removes_exact_copies_only():
    frame = pd.DataFrame({"client_id": ["a", "a", "b"], "x": [1, 1, 2]})
    assert deduplicate_rows(frame)["client_id"].tolist() == ["a", "b"]
    near = pd.DataFrame({"client_id": ["a", "a"], "x": [1, 2]})
    assert len(deduplicate_rows(near)) == 2


def test_drop_duplicate_columns_keeps_the_first():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6], "a_copy": [1, 2, 3], "c": [1, 2, 4]})
    out = drop_duplicate_columns(frame)
    assert list(out["table"].columns) == ["a", "b", "c"]
    assert out["dropped"] == {"a_copy": "a"}


def test_treat_anomalies(processing):
    frame = pd.DataFrame({"DAYS_EMPLOYED": [-10, 365243]})
    out = treat_anomalies(frame, processing)
    assert out["DAYS_EMPLOYED_ANOMALY"].tolist() == [0.0, 1.0]
    assert np.isnan(out["DAYS_EMPLOYED"].iloc[1])


def test_treat_outliers_learns_bounds_and_returns_them():
    frame = pd.DataFrame({"INCOME": [*range(1, 100), 1_000_000.0], "AGE": [30.0] * 99 + [500.0]})
    params = ProcessingParams.model_validate(
        {
            "outliers": {
                "INCOME": {"method": "quantile", "lower": 0.0, "upper": 0.95, "action": "clip"},
                "AGE": {"method": "fixed", "lower": 18, "upper": 100, "action": "set_missing"},
            }
        }
    )
    out = treat_outliers(frame, params)
    assert out["table"]["INCOME"].max() == pytest.approx(out["bounds"]["INCOME"]["upper"])
    assert out["bounds"]["INCOME"]["upper"] < 100
    assert out["table"]["AGE"].isna().sum() == 1


def test_treat_outliers_refuses_a_rule_for_an_absent_column():
    params = ProcessingParams.model_validate({"outliers": {"ABSENT": {"method": "iqr"}}})
    with pytest.raises(ContractError, match=r"outliers\.ABSENT: no such column"):
        treat_outliers(pd.DataFrame({"INCOME": [1.0, 2.0]}), params)


def _with_splits(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "client_id": [f"c{i}" for i in range(n)],
            "TARGET": rng.integers(0, 2, n),
            "INCOME": rng.lognormal(10, 1, n),
            "SPARSE": np.where(rng.random(n) < 0.5, np.nan, 1.0) + rng.random(n),
            "FLAT": 1.0,
        }
    )
    split = SplitParams(test_size=0.2, validation_size=0.2)
    return assign_splits(frame, CONTRACT, ProcessingParams(split=split))


def test_assign_splits_is_stratified_seeded_and_complete():
    out = _with_splits()
    shares = out["split"].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx({"train": 0.6, "validation": 0.2, "test": 0.2})
    rates = out.groupby("split")["TARGET"].mean()
    assert rates.max() - rates.min() < 0.05  # stratified on the target
    assert out["split"].tolist() == _with_splits()["split"].tolist()  # seeded


def test_changing_only_test_rows_changes_no_learned_decision():
    """Outlier bounds, irrelevant-column and duplicate-column decisions see training rows only."""
    params = ProcessingParams.model_validate(
        {
            "outliers": {"INCOME": {"method": "quantile", "lower": 0.01, "upper": 0.99}},
            "irrelevant_columns": {"max_missing_fraction": 0.6},
        }
    )
    frame = _with_splits()
    test = frame["split"] == "test"
    changed = frame.copy()
    changed.loc[test, "INCOME"] = 1e12  # extreme values in test rows only
    changed.loc[test, "SPARSE"] = np.nan  # test rows all missing: 60%+ overall
    changed.loc[test, "FLAT"] = 7.0  # no longer constant overall
    frame["COPY"] = frame["INCOME"]  # a copy of INCOME ...
    changed["COPY"] = changed["INCOME"].where(~test, -1.0)  # ... except in test rows

    def decisions(table: pd.DataFrame) -> tuple:
        bounds = treat_outliers(table, params)["bounds"]
        dropped = drop_irrelevant_columns(table, CONTRACT, params)["dropped"]
        duplicates = drop_duplicate_columns(table)["dropped"]
        return bounds, dropped, duplicates

    assert decisions(frame)[2] == {"COPY": "INCOME"}
    assert decisions(changed) == decisions(frame)
    # and the same changes made to training rows do change them (the test can fail)
    train = frame["split"] == "train"
    moved = frame.copy()
    moved.loc[train, "INCOME"] = moved.loc[train, "INCOME"] * 10
    moved.loc[train, "FLAT"] = np.arange(train.sum(), dtype=float)
    assert decisions(moved)[0] != decisions(frame)[0]
    assert decisions(moved)[1] != decisions(frame)[1]


def test_processing_params_typo_names_key_and_file():
    with pytest.raises(ContractError, match=r"outlier\b.*parameters_data_processing\.yml"):
        load_processing({"outlier": {}})


def test_build_features_adds_declared_features_and_aggregates(contract, processing):
    apps = pd.DataFrame(
        {
            "client_id": ["a", "b"],
            "AMT_CREDIT": [100.0, 50.0],
            "AMT_INCOME_TOTAL": [50.0, 0.0],
            "AMT_ANNUITY": [10.0, 5.0],
            "AMT_GOODS_PRICE": [90.0, 50.0],
            "DAYS_EMPLOYED": [-100.0, np.nan],
            "DAYS_BIRTH": [-10000, -20000],
            "CNT_FAM_MEMBERS": [2.0, 1.0],
            "EXT_SOURCE_1": [np.nan, 0.5],
            "EXT_SOURCE_3": [0.1, 0.2],
        }
    )
    bureau = pd.DataFrame(
        {
            "client_id": ["a", "a"],
            "CREDIT_ACTIVE": ["Active", "Closed"],
            "DAYS_CREDIT": [-10.0, -20.0],
            "CREDIT_DAY_OVERDUE": [5.0, 0.0],
            "AMT_CREDIT_SUM": [1.0, 2.0],
            "AMT_CREDIT_SUM_DEBT": [1.0, 0.0],
            "AMT_CREDIT_SUM_OVERDUE": [1.0, 0.0],
            "AMT_CREDIT_MAX_OVERDUE": [np.nan, 1.0],
            "CNT_CREDIT_PROLONG": [0.0, 0.0],
        }
    )
    aggregates = aggregate_table(bureau, contract, processing, "bureau")
    out = build_features(apps, contract, processing, bureau=aggregates)
    assert out.loc[0, "CREDIT_INCOME_RATIO"] == 2.0
    assert np.isnan(out.loc[1, "CREDIT_INCOME_RATIO"])  # income 0: no infinity
    assert out.loc[0, "EXT_SOURCE_1_MISSING"] == 1.0
    assert out.loc[0, "BUREAU_COUNT"] == 2.0 and out.loc[1, "BUREAU_COUNT"] == 0.0
    assert out.loc[0, "BUREAU_IS_ACTIVE_SUM"] == 1.0 and out.loc[0, "BUREAU_IS_LATE_SUM"] == 1.0


def test_secondary_table_without_aggregation_is_reported(contract):
    with pytest.raises(ContractError, match="secondary_aggregations"):
        aggregate_table(pd.DataFrame({"client_id": ["a"]}), contract, ProcessingParams(), "bureau")


def test_drop_irrelevant_columns_with_reasons():
    n = 200
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "client_id": [f"c{i}" for i in range(n)],  # kept: the id
            "TARGET": rng.integers(0, 2, n),  # kept: the target
            "REF": pd.array(rng.permutation(n) + 10_000, dtype="Int64"),  # ID-like
            "DAYS_BIRTH": pd.array(
                -rng.choice(20_000, n, replace=False), dtype="Int64"
            ),  # distinct but wide: kept
            "CONST": [1.0] * n,
            "SPARSE": [1.0] * 20 + [np.nan] * (n - 20),
            "GOOD": rng.normal(size=n),
        }
    )
    out = drop_irrelevant_columns(frame, CONTRACT, ProcessingParams())
    assert set(out["dropped"]) == {"REF", "CONST", "SPARSE"}
    assert "too sparse" in out["dropped"]["SPARSE"]
    assert list(out["table"].columns) == ["client_id", "TARGET", "DAYS_BIRTH", "GOOD"]
    keep_const = ProcessingParams.model_validate({"irrelevant_columns": {"keep": ["CONST"]}})
    kept = drop_irrelevant_columns(frame, CONTRACT, keep_const)
    assert "CONST" in kept["table"].columns


def test_impute_missing_values_fills_everything_but_id_and_target(processing):
    frame = pd.DataFrame(
        {
            "client_id": ["a", "b", "c"],
            "TARGET": [0, 1, 0],
            "EXT_SOURCE_2": [0.2, np.nan, 0.6],
            "EXT_SOURCE_3": [0.1, 0.3, np.nan],
            "BUREAU_COUNT": [1.0, np.nan, 2.0],
            "AMT_CREDIT": [1.0, 2.0, np.nan],
            "OCCUPATION_TYPE": ["Drivers", None, "Managers"],
        }
    )
    out = impute_missing_values(frame, CONTRACT, processing)
    table = out["table"]
    assert not table.isna().any().any()
    assert table.loc[1, "BUREAU_COUNT"] == 0.0 and table.loc[1, "OCCUPATION_TYPE"] == "Unknown"
    assert table.loc[2, "AMT_CREDIT"] == 1.5
    assert out["groups"]["external_scores"] == ["EXT_SOURCE_2", "EXT_SOURCE_3"]
    assert table["TARGET"].tolist() == [0, 1, 0]


def test_impute_missing_values_refuses_unclaimed_columns():
    frame = pd.DataFrame({"client_id": ["a", "b"], "TARGET": [0, 1], "X": [1.0, np.nan]})
    params = ProcessingParams.model_validate(
        {"imputation": [{"name": "cats", "select": "categorical", "strategy": "most_frequent"}]}
    )
    with pytest.raises(ContractError, match=r"\['X'\].*select: numeric"):
        impute_missing_values(frame, CONTRACT, params)
