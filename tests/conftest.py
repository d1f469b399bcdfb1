"""Shared fixtures: the project's own configuration and small generated tables."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from credit_scoring.project_config import PROJECT_ROOT, project_parameters
from credit_scoring.sandbox import make_project_copy
from credit_scoring.synthetic import SyntheticParams, generate

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Tests never touch the developer's BentoML store: a throw-away one, set before bentoml loads.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-test-")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="session")
def parameters() -> dict[str, Any]:
    return project_parameters(env="base", conf_source=PROJECT_ROOT / "conf")


@pytest.fixture(scope="session")
def contract_params(parameters: dict[str, Any]) -> dict[str, Any]:
    return parameters["data_contract"]


@pytest.fixture(scope="session")
def ingestion_params(parameters: dict[str, Any]) -> dict[str, Any]:
    return parameters["data_ingestion"]


@pytest.fixture(scope="session")
def processing_params(parameters: dict[str, Any]) -> dict[str, Any]:
    return parameters["data_processing"]


@pytest.fixture(scope="session")
def raw_tables() -> dict[str, pd.DataFrame]:
    """Small synthetic tables (read-only: tests copy before changing them)."""
    return generate(SyntheticParams(n_applications=800, seed=3, invalid_fraction=0.01))


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the project's configuration, to run `kedro run` against."""
    return make_project_copy(tmp_path)
