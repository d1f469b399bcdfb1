"""Ingestion nodes: minimisation, pseudonymisation, validation with fail or quarantine."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from credit_scoring.config.ingestion import load_ingestion
from credit_scoring.core.errors import ContractError
from credit_scoring.pipelines.data_ingestion.nodes import (
    ingest_applications,
    ingest_secondary_table,
    minimise_columns,
    pseudonymise_ids,
)
from credit_scoring.training.privacy import pseudonymise_value
from tests.conftest import TEST_KEY


def _apps(raw_tables) -> pd.DataFrame:
    # The synthetic default injects a few invalid rows; start from clean ones here.
    apps = raw_tables["application_train"].copy()
    apps = apps[(apps["AMT_CREDIT"] >= 0) & (apps["CNT_CHILDREN"] >= 0)]
    apps = apps[apps["NAME_CONTRACT_TYPE"].isin(["Cash loans", "Revolving loans"])]
    return apps[apps["EXT_SOURCE_2"].fillna(0) <= 1].reset_index(drop=True)


def test_minimise_keeps_only_whitelisted_columns():
    frame = pd.DataFrame({"a": [1], "b": [2], "secret": ["x"]})
    assert list(minimise_columns(frame, ["a", "b"], "t").columns) == ["a", "b"]
    assert "secret" in frame.columns


def test_pseudonymise_replaces_the_raw_id():
    frame = pd.DataFrame({"SK_ID_CURR": [100002, 100003], "x": [1, 2]})
    out = pseudonymise_ids(frame, TEST_KEY, "SK_ID_CURR", "client_id")
    assert "SK_ID_CURR" not in out.columns
    assert out["client_id"].iloc[0] == pseudonymise_value(100002, TEST_KEY)
    assert frame["SK_ID_CURR"].tolist() == [100002, 100003]


def test_pseudonymise_without_id_column_numbers_rows():
    out = pseudonymise_ids(pd.DataFrame({"x": [5, 6]}), TEST_KEY, None, "client_id")
    assert out["client_id"].tolist() == ["row-0", "row-1"]


def test_ingest_applications_valid_data(raw_tables, contract, ingestion):
    apps = _apps(raw_tables)
    out = ingest_applications(apps, TEST_KEY, contract, ingestion)
    valid = out["valid"]
    assert len(valid) == len(apps) and out["quarantine"].empty
    assert "SK_ID_CURR" not in valid.columns
    raw_ids = set(apps["SK_ID_CURR"].astype(str))
    assert not raw_ids & set(valid["client_id"])
    assert valid["client_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(valid["TARGET"].unique()) <= {0, 1}
    assert out["report"]["rows_invalid"] == 0


def test_quarantine_keeps_bad_rows_with_reason(raw_tables, contract, ingestion):
    apps = _apps(raw_tables)
    apps.loc[3, "AMT_CREDIT"] = -10.0
    apps.loc[7, "NAME_INCOME_TYPE"] = "Lottery winner"
    out = ingest_applications(apps, TEST_KEY, contract, ingestion)
    assert len(out["valid"]) == len(apps) - 2
    reasons = " ".join(out["quarantine"]["_rejection_reason"])
    assert "AMT_CREDIT: greater_than_or_equal_to" in reasons
    assert "NAME_INCOME_TYPE: isin" in reasons and "Lottery winner" in reasons
    assert (
        out["report"]["failures_by_rule"][
            "NAME_INCOME_TYPE: isin(['Working', 'Commercial associate', 'Pensioner', 'State servant', 'Unemployed', 'Student', 'Businessman', 'Maternity leave'])"
        ]
        == 1
    )
    assert not set(apps["SK_ID_CURR"].astype(str)) & set(out["quarantine"]["client_id"])


def test_fail_mode_names_column_rule_and_rows(raw_tables, contract, ingestion):
    apps = _apps(raw_tables)
    apps.loc[5, "DAYS_BIRTH"] = 100
    with pytest.raises(ContractError) as error:
        ingest_applications(
            apps, TEST_KEY, contract, ingestion.model_copy(update={"on_invalid": "fail"})
        )
    message = str(error.value)
    assert "DAYS_BIRTH: less_than_or_equal_to(-5840.0)" in message
    assert "row 5 = 100" in message and "on_invalid" in message


def test_too_many_invalid_rows_stop_even_in_quarantine(raw_tables, contract, ingestion):
    apps = _apps(raw_tables)
    apps.loc[: len(apps) // 5, "CODE_GENDER"] = "?"
    with pytest.raises(ContractError, match="max_invalid_fraction"):
        ingest_applications(apps, TEST_KEY, contract, ingestion)


def test_unknown_ingestion_setting_is_refused_with_key_and_file():
    with pytest.raises(ContractError, match=r"on_invalid.*parameters_data_ingestion\.yml"):
        load_ingestion({"on_invalid": "ignore"})


def test_bureau_is_pseudonymised_with_the_same_key(raw_tables, contract, ingestion, caplog):
    bureau = raw_tables["bureau"]
    with caplog.at_level(logging.INFO):
        out = ingest_secondary_table(bureau, TEST_KEY, contract, ingestion, "bureau")
    assert "SK_ID_BUREAU" not in out["valid"].columns  # minimised
    first = bureau["SK_ID_CURR"].iloc[0]
    assert out["valid"]["client_id"].iloc[0] == pseudonymise_value(first, TEST_KEY)
    assert str(first) not in caplog.text


def test_a_batch_of_a_table_without_ids_numbers_rows_by_the_tables_order():
    """On Spark a table is validated batch by batch: rows without an id are numbered by the
    table's own order (``_row``), so two batches never give the same row pseudonym, and a
    quarantined row keeps its values as text with the reason."""
    from credit_scoring.core.contract import ColumnSpec
    from credit_scoring.pipelines.data_ingestion.nodes import _ingest_batch

    columns = {"x": ColumnSpec(dtype="float", min=0)}
    kinds = {"row_id": "str", "x": "float", "_row": "bigint"}
    batch = pd.DataFrame({"x": ["1.5", "-2", None], "_row": [2**33, 2**33 + 1, 2**33 + 2]})
    out = _ingest_batch(batch, "key", None, "row_id", columns, None, "loans", kinds)
    valid = out[out["_rejection_reason"].isna()]
    assert valid["row_id"].tolist() == [f"row-{2**33}", f"row-{2**33 + 2}"]
    (quarantined,) = out[out["_rejection_reason"].notna()].to_dict(orient="records")
    assert quarantined["_rejection_reason"].startswith("x: ")
    assert quarantined["_row"] == 2**33 + 1 and pd.isna(quarantined["x"])
    assert '"row_id":"row-8589934593"' in quarantined["_text"]
