"""The data contract: the schema built from conf/ rejects each kind of bad value clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from credit_scoring.core.contract import build_request_model, load_contract
from credit_scoring.core.errors import ContractError
from credit_scoring.training.validation import build_schema, describe_failures, validate_frame

CONTRACT = {
    "id_column": "client_id",
    "target": {"column": "TARGET", "positive": 1, "negative": 0},
    "columns": {
        "AMOUNT": {"dtype": "float", "nullable": False, "min": 0, "max": 1000},
        "CHILDREN": {"dtype": "int", "min": 0},
        "KIND": {"dtype": "category", "allowed": ["a", "b"]},
        "OPTIONAL": {"dtype": "float", "required": False},
    },
}


def _schema():
    contract = load_contract(CONTRACT)
    return build_schema(contract.columns, "client_id", contract.target)


def _frame(**changes):
    frame = pd.DataFrame(
        {
            "client_id": ["x1", "x2", "x3"],
            "TARGET": [0, 1, 0],
            "AMOUNT": [10.0, 20.0, 30.0],
            "CHILDREN": [0, 1, 2],
            "KIND": ["a", "b", None],
        }
    )
    for column, (row, value) in changes.items():
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
    return frame


def test_valid_frame_passes_and_is_typed():
    outcome = validate_frame(_frame(), _schema())
    assert outcome.invalid.empty
    assert str(outcome.valid["CHILDREN"].dtype) == "Int64"
    assert outcome.valid["AMOUNT"].dtype == np.float64


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("AMOUNT", -1.0, "greater_than_or_equal_to"),
        ("AMOUNT", 5000.0, "less_than_or_equal_to"),
        ("AMOUNT", None, "not_nullable"),
        ("AMOUNT", "lots", "coerce_dtype"),
        ("CHILDREN", -2, "greater_than_or_equal_to"),
        ("KIND", "zzz", "isin"),
        ("TARGET", 7, "isin"),
        ("client_id", None, "not_nullable"),
    ],
)
def test_each_rule_puts_only_the_bad_row_aside(column, value, rule):
    outcome = validate_frame(_frame(**{column: (1, value)}), _schema())
    assert list(outcome.valid["client_id"]) == ["x1", "x3"]
    assert list(outcome.invalid.index) == [1]
    reason = outcome.invalid["_rejection_reason"].iloc[0]
    assert column in reason and rule in reason
    assert rule in describe_failures(outcome, "applications")


def test_missing_required_column_names_column_and_fix():
    with pytest.raises(ContractError, match=r"lacks column\(s\) \['CHILDREN'\].*required: false"):
        validate_frame(_frame().drop(columns="CHILDREN"), _schema())


def test_optional_column_may_be_absent_but_is_checked_when_present():
    assert validate_frame(_frame(), _schema()).invalid.empty
    with_optional = _frame().assign(OPTIONAL=[1.0, "bad", 2.0])
    assert len(validate_frame(with_optional, _schema()).invalid) == 1


def test_contract_typo_names_the_key_and_the_file():
    bad = {**CONTRACT, "columns": {"AMOUNT": {"dtype": "float", "minimum": 0}}}
    with pytest.raises(ContractError) as error:
        load_contract(bad)
    assert "data_contract.columns.AMOUNT.minimum" in str(error.value)
    assert "conf/base/parameters_data_contract.yml" in str(error.value)


@pytest.mark.parametrize(
    "column",
    [
        {"dtype": "float", "allowed": ["a"]},
        {"dtype": "category", "min": 0},
        {"dtype": "int", "min": 5, "max": 1},
        {"dtype": "decimal"},
    ],
)
def test_inconsistent_column_rules_are_refused(column):
    with pytest.raises(ContractError, match=r"data_contract\.columns\.X"):
        load_contract({**CONTRACT, "columns": {"X": column}})


def test_project_contract_loads(parameters):
    contract = load_contract(parameters["data_contract"])
    assert contract.id_column == "SK_ID_CURR"
    assert "bureau" in contract.secondary_tables
    assert {"EXT_SOURCE_1", "DAYS_EMPLOYED", "CODE_GENDER"} <= set(contract.feature_columns)


def test_request_model_mirrors_the_contract():
    from pydantic import ValidationError

    contract = load_contract(CONTRACT)
    model = build_request_model(contract.columns)
    ok = model(AMOUNT=10.0, CHILDREN=1, KIND="a")
    assert ok.OPTIONAL is None
    for bad, field in [
        ({"AMOUNT": -1.0, "CHILDREN": 1}, "AMOUNT"),
        ({"AMOUNT": float("nan"), "CHILDREN": 1}, "AMOUNT"),
        ({"AMOUNT": float("inf"), "CHILDREN": 1}, "AMOUNT"),
        ({"AMOUNT": 1.0, "CHILDREN": 1, "KIND": "zzz"}, "KIND"),
        ({"AMOUNT": 1.0, "CHILDREN": 1, "SURPRISE": 3}, "SURPRISE"),
        ({"CHILDREN": 1}, "AMOUNT"),
        ({"AMOUNT": "ten", "CHILDREN": 1}, "AMOUNT"),
    ]:
        with pytest.raises(ValidationError) as error:
            model(**bad)
        assert error.value.errors()[0]["loc"] == (field,)
    schema = model.model_json_schema()
    assert (
        schema["properties"]["AMOUNT"]["minimum"] == 0 and schema["additionalProperties"] is False
    )


def test_request_model_accepts_every_valid_synthetic_row(contract, raw_tables):
    model = build_request_model(contract.columns)
    rows = raw_tables["application_train"].drop(columns=["SK_ID_CURR", "TARGET"]).head(300)
    outcome = validate_frame(rows, build_schema(contract.columns))
    for record in (
        outcome.valid.astype(object).where(outcome.valid.notna(), None).to_dict("records")
    ):
        model(**record)
