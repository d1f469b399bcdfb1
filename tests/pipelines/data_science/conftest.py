"""Fixtures for training tests: a small processed dataset and a throw-away MLflow store."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.io import AbstractDataset, DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from credit_scoring.config.data_science import DataScienceParams
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.config.sections import SECTIONS
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.pipelines import data_ingestion, data_processing
from credit_scoring.training.synthetic import generate
from tests.conftest import TEST_KEY


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so tests can read intermediate outputs."""

    def _release(self) -> None:
        pass


# What the registration logs in MLflow through the catalog: the API and the monitoring read it.
LOGGED_BY_THE_CATALOG = (
    "serving_data_contract",
    "serving_data_processing",
    "serving_outlier_bounds",
    "serving_model_card",
    "monitoring_reference_sample",
    "gate_report",
)


# the registration nodes, in the order they run (log, score the champion, gate, card, promote)
REGISTRATION = (
    "log_model_version_node",
    "score_champion_node",
    "gate_model_node",
    "render_model_card_node",
    "promote_model_node",
)


def project_datasets(names: tuple[str, ...], root: Path) -> dict[str, AbstractDataset]:
    """The project's catalog entries ``names`` (conf/base/catalog.yml), their files in ``root``."""
    entries = yaml.safe_load((PROJECT_ROOT / "conf/base/catalog.yml").read_text())
    config = {}
    for name in names:
        entry = copy.deepcopy(entries[name])
        inner = entry.get("dataset", entry)
        inner["filepath"] = str(root / inner["filepath"])
        config[name] = entry
    catalog = DataCatalog.from_config(config)
    return {name: catalog[name] for name in names}


def run_in_memory(
    pipeline: Any, inputs: dict[str, Any], datasets: dict[str, AbstractDataset] | None = None
) -> dict[str, Any]:
    """Run ``pipeline`` on in-memory inputs; outputs in memory, except ``datasets``."""
    catalog = DataCatalog(
        {name: MemoryDataset(value, copy_mode="assign") for name, value in inputs.items()}
    )
    for name in pipeline.all_outputs():
        catalog[name] = (datasets or {}).get(name) or KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    return {name: catalog.load(name) for name in pipeline.all_outputs()}


@pytest.fixture(scope="session")
def small_tables() -> dict[str, Any]:
    return generate(SyntheticParams(n_applications=2500, seed=21))


@pytest.fixture(scope="session")
def processing_outputs(small_tables, parameters) -> dict[str, Any]:
    typed = {
        key: SECTIONS[key].model_validate(parameters[key])
        for key in ("data_contract", "data_ingestion", "data_processing")
    }
    contract = typed["data_contract"]
    pipeline = data_ingestion.create_pipeline(contract) + data_processing.create_pipeline(contract)
    outputs = run_in_memory(
        pipeline,
        {
            "applications_raw": small_tables["application_train"],
            "bureau_raw": small_tables["bureau"],
            "pseudonymisation_key": TEST_KEY,
            **{f"params:{key}": section for key, section in typed.items()},
        },
    )
    return outputs


@pytest.fixture(scope="session")
def primary(processing_outputs) -> Any:
    return processing_outputs["applications_primary"]


@pytest.fixture(scope="session")
def outlier_bounds(processing_outputs) -> Any:
    return processing_outputs["outlier_bounds"]


@pytest.fixture(scope="session")
def science(parameters) -> DataScienceParams:
    return DataScienceParams.model_validate(parameters["data_science"])


@pytest.fixture
def fast_params(parameters) -> DataScienceParams:
    """The project's data_science parameters with small searches (seconds, not minutes)."""
    params = copy.deepcopy(parameters["data_science"])
    candidates = params["candidates"]
    candidates["logistic_regression"]["search"]["n_trials"] = 2
    candidates["lightgbm"]["search"]["n_trials"] = 2
    candidates["lightgbm"]["fixed"]["n_estimators"] = 60
    params["explanations"].update(sample_size=200, permutation_repeats=1)
    return DataScienceParams.model_validate(params)
