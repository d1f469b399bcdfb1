"""Ingestion + processing run end to end on an in-memory catalog (no files, no session)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from credit_scoring.config.checks import check_parameters
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.pipelines import data_ingestion, data_processing
from tests.conftest import TEST_KEY


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate outputs."""

    def _release(self) -> None:
        pass


@pytest.fixture(scope="module")
def run_outputs(raw_tables, parameters) -> dict[str, Any]:
    keys = ["data_contract", "data_ingestion", "data_processing"]
    typed = check_parameters(parameters, keys, [PROJECT_ROOT / "conf/base"])
    contract = typed["data_contract"]
    pipeline = data_ingestion.create_pipeline(contract) + data_processing.create_pipeline(contract)
    inputs = {
        "applications_raw": raw_tables["application_train"],
        "bureau_raw": raw_tables["bureau"],
        "pseudonymisation_key": TEST_KEY,
        # typed, as Kedro hands them to the nodes (typed `params:` inputs)
        "params:data_contract": typed["data_contract"],
        "params:data_ingestion": typed["data_ingestion"],
        "params:data_processing": typed["data_processing"],
    }
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in inputs.items()})
    for name in pipeline.all_outputs():
        catalog[name] = KeptDataset()
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


def test_model_input_table_is_complete_and_pseudonymised(run_outputs, raw_tables):
    table = run_outputs["model_input_table"]
    raw = raw_tables["application_train"]
    assert not table.drop(columns=["client_id"]).isna().any().any()
    assert table["client_id"].is_unique
    assert not set(raw["SK_ID_CURR"].astype(str)) & set(table["client_id"])
    # every valid application is there once
    assert len(table) == len(run_outputs["applications_validated"].drop_duplicates())
    assert len(table) < raw["SK_ID_CURR"].nunique()


def test_features_and_cleaning_are_applied(run_outputs):
    table = run_outputs["model_input_table"]
    for column in (
        "CREDIT_INCOME_RATIO",
        "DAYS_EMPLOYED_ANOMALY",
        "BUREAU_COUNT",
        "BUREAU_IS_ACTIVE_SUM",
    ):
        assert column in table.columns
    assert "OBS_60_CNT_SOCIAL_CIRCLE" not in table.columns  # duplicate column
    assert "APPLICATION_REF" not in table.columns  # ID-like
    assert "FLAG_MOBIL" not in table.columns  # constant
    assert (table["DAYS_EMPLOYED"] <= 0).all()  # sentinel gone
    upper = run_outputs["outlier_bounds"]["AMT_INCOME_TOTAL"]["upper"]
    assert table["AMT_INCOME_TOTAL"].max() <= upper


def test_reports_account_for_every_row(run_outputs, raw_tables):
    ingestion = run_outputs["applications_validation_report"]
    assert ingestion["rows_in"] == len(raw_tables["application_train"])
    assert ingestion["rows_in"] == ingestion["rows_valid"] + ingestion["rows_invalid"]
    assert ingestion["rows_invalid"] == len(run_outputs["applications_quarantine"]) > 0
    processing = run_outputs["processing_report"]
    assert processing["rows_out"] == len(run_outputs["model_input_table"])
    assert processing["duplicate_rows_removed"] > 0
    assert processing["duplicate_columns_dropped"] == {
        "OBS_60_CNT_SOCIAL_CIRCLE": "OBS_30_CNT_SOCIAL_CIRCLE"
    }


def test_primary_table_keeps_missing_values_for_the_model_pipeline(run_outputs):
    primary = run_outputs["applications_primary"]
    assert primary["EXT_SOURCE_1"].isna().any()
    assert list(primary.columns) == list(run_outputs["model_input_table"].columns)


def test_transform_rows_reproduces_the_pipeline_row_by_row(run_outputs, parameters, processing):
    """No training/serving skew: the one-call transform equals the pipeline's nodes."""
    from credit_scoring.core.features import transform_rows

    spec = processing.feature_spec()
    declared = parameters["data_processing"]["domain_features"]
    assert list(spec.domain_features) == list(declared)  # every declared feature, in order
    features = run_outputs["applications_features"]
    raw_columns = [c for c in run_outputs["applications_unique_columns"].columns]
    rows = run_outputs["applications_unique_columns"].sample(50, random_state=0)
    served = transform_rows(rows[raw_columns], spec, run_outputs["outlier_bounds"])
    expected = features.set_index("client_id").loc[
        rows["client_id"], served.columns.drop("client_id")
    ]
    pd.testing.assert_frame_equal(
        served.set_index("client_id")[expected.columns], expected, check_dtype=False, atol=1e-12
    )


def test_row_transformer_gives_the_model_exactly_the_pipelines_rows(
    run_outputs, contract, processing
):
    """The API's pandas-free hot path equals the pipeline: processed values and model input."""
    import numpy as np

    from credit_scoring.core.encoding import category_codes, model_input
    from credit_scoring.core.features import RowTransformer
    from credit_scoring.core.spec import json_records

    spec = processing.feature_spec()
    primary = run_outputs["applications_primary"].set_index("client_id")
    features = [c for c in primary.columns if c not in (contract.target.column, "split")]
    categories = category_codes(primary[features])
    store = run_outputs["client_features"].set_index("client_id")
    clients = store.index.intersection(primary.index)[:200]
    transformer = RowTransformer(spec, run_outputs["outlier_bounds"], features, categories)

    expected = model_input(primary.loc[clients, features], "lightgbm", categories)
    expected = expected.to_numpy(dtype=float)
    records = json_records(store.loc[clients], list(store.columns))
    served = np.vstack([transformer.vector(r) for r in records])
    np.testing.assert_array_equal(np.isnan(served), np.isnan(expected))
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12, equal_nan=True)


def test_client_feature_store_has_one_row_per_client_and_no_target(run_outputs, contract):
    store = run_outputs["client_features"]
    assert store.columns[0] == "client_id" and store["client_id"].is_unique
    assert contract.target.column not in store.columns
    assert "SK_ID_CURR" not in store.columns
    assert {"BUREAU_COUNT", "AMT_CREDIT"} <= set(store.columns)
    assert (store["BUREAU_COUNT"] >= 0).all()
