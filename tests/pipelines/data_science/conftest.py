"""Fixtures for training tests: a small processed dataset and a throw-away MLflow store."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.core.contract import load_contract
from credit_scoring.pipelines import data_ingestion, data_processing
from credit_scoring.training.synthetic import generate
from tests.conftest import TEST_KEY


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate outputs."""

    def _release(self) -> None:
        pass


def run_in_memory(pipeline: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    catalog = DataCatalog(
        {name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()}
    )
    for name in pipeline.all_outputs():
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


@pytest.fixture(scope="session")
def small_tables() -> dict[str, Any]:
    return generate(SyntheticParams(n_applications=2500, seed=21))


@pytest.fixture(scope="session")
def processing_outputs(small_tables, parameters) -> dict[str, Any]:
    contract = load_contract(parameters["data_contract"])
    pipeline = data_ingestion.create_pipeline(contract) + data_processing.create_pipeline(contract)
    outputs = run_in_memory(
        pipeline,
        {
            "applications_raw": small_tables["application_train"],
            "bureau_raw": small_tables["bureau"],
            "pseudonymisation_key": TEST_KEY,
            **{
                f"params:{k}": parameters[k]
                for k in ("data_contract", "data_ingestion", "data_processing")
            },
        },
    )
    return outputs


@pytest.fixture(scope="session")
def primary(processing_outputs) -> Any:
    return processing_outputs["applications_primary"]


@pytest.fixture(scope="session")
def outlier_bounds(processing_outputs) -> Any:
    return processing_outputs["outlier_bounds"]


@pytest.fixture
def fast_params(parameters) -> dict[str, Any]:
    """The project's data_science parameters with small searches (seconds, not minutes)."""
    params = dict(parameters["data_science"])
    candidates = {name: dict(c) for name, c in params["candidates"].items()}
    candidates["logistic_regression"]["search"] = {
        **candidates["logistic_regression"]["search"],
        "n_trials": 2,
    }
    candidates["lightgbm"]["search"] = {**candidates["lightgbm"]["search"], "n_trials": 2}
    candidates["lightgbm"]["fixed"] = {**candidates["lightgbm"]["fixed"], "n_estimators": 60}
    params["candidates"] = candidates
    params["explanations"] = {
        **params["explanations"],
        "sample_size": 200,
        "permutation_repeats": 1,
    }
    return params
