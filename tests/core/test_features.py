"""Row-level features shared by training and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_scoring.core.errors import ContractError
from credit_scoring.core.features import (
    DerivedFeature,
    SecondaryAggregation,
    add_derived_features,
    aggregate_secondary,
    apply_outlier_bounds,
    flag_anomalies,
    join_aggregates,
    load_feature_spec,
)

FRAME = pd.DataFrame({"a": [10.0, 3.0, np.nan], "b": [2.0, 0.0, 1.0], "k": ["x", "y", None]})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"op": "ratio", "left": "a", "right": "b"}, [5.0, np.nan, np.nan]),
        ({"op": "difference", "left": "a", "right": "b"}, [8.0, 3.0, np.nan]),
        ({"op": "sum", "left": "a", "value": 1}, [11.0, 4.0, np.nan]),
        ({"op": "product", "left": "a", "value": -2}, [-20.0, -6.0, np.nan]),
        ({"op": "greater_than", "left": "a", "value": 5}, [1.0, 0.0, np.nan]),
        ({"op": "equals", "left": "k", "value": "x"}, [1.0, 0.0, np.nan]),
        ({"op": "is_missing", "left": "a"}, [0.0, 0.0, 1.0]),
    ],
)
def test_each_operation(spec, expected):
    out = add_derived_features(FRAME, {"F": DerivedFeature.model_validate(spec)})
    np.testing.assert_allclose(out["F"].to_numpy(dtype=float), expected)
    assert "F" not in FRAME.columns  # the input is not mutated


def test_division_by_zero_never_gives_infinity():
    out = add_derived_features(FRAME, {"F": DerivedFeature(op="ratio", left="a", right="b")})
    assert not np.isinf(out["F"]).any()


def test_feature_on_unknown_column_names_feature_column_and_file():
    with pytest.raises(
        ContractError, match=r"domain_features\.F.*\['nope'\].*parameters_data_processing"
    ):
        add_derived_features(FRAME, {"F": DerivedFeature(op="ratio", left="a", right="nope")})


def test_feature_declaration_needs_exactly_one_operand():
    with pytest.raises(ContractError, match="exactly one of"):
        load_feature_spec({"domain_features": {"F": {"op": "ratio", "left": "a"}}})


def test_anomaly_becomes_missing_plus_flag():
    frame = pd.DataFrame({"DAYS_EMPLOYED": [-100, 365243, -5]})
    spec = load_feature_spec(
        {"anomalies": [{"column": "DAYS_EMPLOYED", "value": 365243, "flag_column": "ANOM"}]}
    )
    out = flag_anomalies(frame, spec.anomalies)
    assert out["ANOM"].tolist() == [0.0, 1.0, 0.0]
    assert out["DAYS_EMPLOYED"].isna().tolist() == [False, True, False]


def test_outlier_bounds_clip_or_set_missing():
    frame = pd.DataFrame({"x": [-5.0, 5.0, 50.0], "y": [-5.0, 5.0, 50.0]})
    bounds = {
        "x": {"lower": 0.0, "upper": 10.0, "action": "clip"},
        "y": {"lower": 0.0, "upper": 10.0, "action": "set_missing"},
    }
    out = apply_outlier_bounds(frame, bounds)
    assert out["x"].tolist() == [0.0, 5.0, 10.0]
    assert out["y"].isna().tolist() == [True, False, True]


def test_secondary_aggregates_and_join_give_zero_count_to_clients_without_rows():
    table = pd.DataFrame(
        {"cid": ["a", "a", "b"], "AMT": [1.0, 3.0, 10.0], "STATE": ["Active", "Closed", "Active"]}
    )
    spec = SecondaryAggregation(
        prefix="T_",
        derived={"ACTIVE": DerivedFeature(op="equals", left="STATE", value="Active")},
        aggregations={"AMT": ["sum", "max"], "ACTIVE": ["sum"]},
    )
    agg = aggregate_secondary(table, "cid", spec, "t").set_index("cid")
    assert agg.loc["a", "T_AMT_SUM"] == 4.0 and agg.loc["b", "T_AMT_MAX"] == 10.0
    assert agg.loc["a", "T_ACTIVE_SUM"] == 1.0 and agg.loc["a", "T_COUNT"] == 2.0
    joined = join_aggregates(pd.DataFrame({"cid": ["a", "c"]}), agg.reset_index(), "cid", "T_COUNT")
    assert joined["T_COUNT"].tolist() == [2.0, 0.0]
    assert np.isnan(joined.loc[1, "T_AMT_SUM"])
