"""The pandas and the Spark engine run the same pipeline objects on the same raw tables and
give the same tables: the model input (rows by pseudonym, columns, numbers to 1e-9), the
quarantined rows with their reasons, the client feature store and what was learned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from credit_scoring.core.contract import DataContract
from credit_scoring.core.frames import to_pandas
from credit_scoring.pipelines import data_ingestion, data_processing

pytestmark = pytest.mark.integration

KEY = "parity-test-key-0123456789abcdef"
OUTPUTS = [
    "model_input_table",
    "applications_quarantine",
    "bureau_quarantine",
    "client_features",
    "outlier_bounds",
    "duplicate_columns",
    "irrelevant_columns",
    "imputation_groups",
    "processing_report",
    "applications_validation_report",
]


class KeptDataset(MemoryDataset):
    """A memory dataset the runner does not release after its last reader."""

    def _release(self) -> None:
        pass


def _run(raw: dict[str, Any], parameters: dict[str, Any], contract: DataContract) -> dict:
    """Both pipelines on an in-memory catalog; ``parameters`` typed as the project hook
    types them."""
    pipeline = data_ingestion.create_pipeline(contract) + data_processing.create_pipeline(contract)
    datasets = {
        "applications_raw": MemoryDataset(raw["application_train"]),
        "bureau_raw": MemoryDataset(raw["bureau"]),
        "pseudonymisation_key": MemoryDataset(KEY),
        **{f"params:{k}": MemoryDataset(v) for k, v in parameters.items()},
        **{name: KeptDataset() for name in OUTPUTS},
    }
    catalog = DataCatalog(datasets=datasets)
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


@pytest.fixture(scope="module")
def engines(
    spark: Any,
    raw_tables: dict[str, pd.DataFrame],
    contract: DataContract,
    ingestion: Any,
    processing: Any,
    tmp_path_factory: Any,
) -> tuple[dict, dict]:
    """Both engines' outputs. Spark reads the tables as the catalog does: CSV files as text."""
    parameters = {
        "data_contract": contract,
        "data_ingestion": ingestion,
        "data_processing": processing,
    }
    folder: Path = tmp_path_factory.mktemp("raw")
    pandas_raw, spark_raw = {}, {}
    for name in ("application_train", "bureau"):
        path = folder / f"{name}.csv"
        raw_tables[name].to_csv(path, index=False)
        pandas_raw[name] = pd.read_csv(path)
        spark_raw[name] = spark.read.csv(str(path), header=True, inferSchema=False)
    return _run(pandas_raw, parameters, contract), _run(spark_raw, parameters, contract)


def _by_client(table: Any) -> pd.DataFrame:
    frame = to_pandas(table)
    return frame.sort_values("client_id", kind="stable").reset_index(drop=True)


def _assert_same_table(left: pd.DataFrame, right: pd.DataFrame) -> None:
    assert list(left.columns) == list(right.columns) or set(left.columns) == set(right.columns)
    assert len(left) == len(right)
    for column in left.columns:
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            np.testing.assert_allclose(
                a.astype("float64"),
                b.astype("float64"),
                rtol=1e-9,
                atol=1e-9,
                err_msg=column,
            )
        else:
            assert (
                a.astype(object).where(a.notna(), None).tolist()
                == b.astype(object).where(b.notna(), None).tolist()
            ), column


def test_the_model_input_table_is_the_same_on_both_engines(engines: tuple[dict, dict]):
    on_pandas, on_spark = engines
    left, right = (
        _by_client(on_pandas["model_input_table"]),
        _by_client(on_spark["model_input_table"]),
    )
    assert len(left) > 700 and "split" in left.columns
    _assert_same_table(left, right[left.columns])
    assert set(left["split"]) == {"train", "validation", "test"}


def test_the_same_rows_are_quarantined_for_the_same_reasons(engines: tuple[dict, dict]):
    on_pandas, on_spark = engines
    left = to_pandas(on_pandas["applications_quarantine"])
    right = to_pandas(on_spark["applications_quarantine"])
    assert len(left) >= 1  # the generator's invalid rows

    def reasons(table: pd.DataFrame) -> set[tuple[str, str]]:
        return set(zip(table["client_id"], table["_rejection_reason"], strict=True))

    assert reasons(left) == reasons(right)
    report_p = on_pandas["applications_validation_report"]
    report_s = on_spark["applications_validation_report"]
    for key in ("rows_in", "rows_valid", "rows_invalid", "failures_by_rule"):
        assert report_p[key] == report_s[key], key


def test_what_processing_learned_is_the_same(engines: tuple[dict, dict]):
    on_pandas, on_spark = engines
    for name in ("duplicate_columns", "irrelevant_columns", "imputation_groups"):
        assert on_pandas[name] == on_spark[name], name
    for column, bound in on_pandas["outlier_bounds"].items():
        other = on_spark["outlier_bounds"][column]
        assert bound["action"] == other["action"]
        for side in ("lower", "upper"):  # exact quantiles on both engines
            assert bound[side] == pytest.approx(other[side], rel=1e-12, abs=1e-12)
    report_p, report_s = on_pandas["processing_report"], on_spark["processing_report"]
    for key in ("rows_in", "rows_out", "duplicate_rows_removed", "columns_out"):
        assert report_p[key] == report_s[key], key


def test_the_client_feature_store_is_the_same(engines: tuple[dict, dict]):
    on_pandas, on_spark = engines
    left, right = _by_client(on_pandas["client_features"]), _by_client(on_spark["client_features"])
    _assert_same_table(left, right[left.columns])
