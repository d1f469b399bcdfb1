"""Shared fixtures: the project's own configuration and small generated tables; the trained
project, its bento and its running API (tests/serving_fixtures.py) for serving and dashboard."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from credit_scoring.config.ingestion import IngestionParams
from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.core.contract import DataContract
from credit_scoring.core.processing import ProcessingParams
from credit_scoring.devtools.sandbox import make_project_copy
from credit_scoring.training.synthetic import generate

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# Tests never touch the developer's BentoML store: a throw-away one, set before bentoml loads.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml-test-")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

TEST_KEY = "test-key-0123456789abcdef0123456789abcdef"
pytest_plugins = ["tests.serving_fixtures"]

# A test that needs the trained project (a real `kedro run`), a throw-away project to run
# Kedro in, the whole training pipeline run in memory (first_run), a JVM (spark), a bento or
# a running server is an integration test, whether or not its module says so: `make test-fast`
# (-m "not integration") runs no pipeline (unit tests of the training library still fit
# models on a few hundred rows, in seconds).
INTEGRATION_FIXTURES = frozenset(
    {"trained_project", "project_copy", "first_run", "bento", "api_server", "spark", "object_store"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def parameters() -> dict[str, Any]:
    return project_parameters(env="base", conf_source=PROJECT_ROOT / "conf")


# The project's sections typed once, as Kedro hands them to the nodes (typed `params:` inputs).
@pytest.fixture(scope="session")
def contract(parameters: dict[str, Any]) -> DataContract:
    return DataContract.model_validate(parameters["data_contract"])


@pytest.fixture(scope="session")
def ingestion(parameters: dict[str, Any]) -> IngestionParams:
    return IngestionParams.model_validate(parameters["data_ingestion"])


@pytest.fixture(scope="session")
def processing(parameters: dict[str, Any]) -> ProcessingParams:
    return ProcessingParams.model_validate(parameters["data_processing"])


@pytest.fixture(scope="session")
def raw_tables() -> dict[str, pd.DataFrame]:
    """Small synthetic tables (read-only: tests copy before changing them)."""
    return generate(SyntheticParams(n_applications=800, seed=3, invalid_fraction=0.01))


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the project's configuration, to run `kedro run` against."""
    return make_project_copy(tmp_path)


# --- databases: a SQLite file and a fresh schema of the real PostgreSQL ---------------------

POSTGRES_URL = os.environ.get(
    "CREDIT_SCORING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI at {POSTGRES_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serving.db'}"
    else:
        yield from postgres_schema_url()


def copy_git_files(destination: Path) -> Path:
    """The files git knows (tracked, or new and not ignored) copied to ``destination``, as a
    clone of the working tree would have them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def require_binary(name: str) -> str:
    """The path of a program the test needs: a skip locally, a failure in CI."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian packages: see .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_python(
    code: str, *args: str, cwd: Path, env: dict[str, str], timeout: float = 600
) -> dict[str, Any]:
    """``code`` run by this interpreter in a fresh process (what a real `kedro run` imports
    and starts, not what this test session has); the JSON object it printed last."""
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# --- MLflow: a throw-away store per test ----------------------------------------------------


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema migrated, made once: each test copies it
    rather than re-running MLflow's migrations (about 1.5 s a store)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "artifacts"))
    store.engine.dispose()
    return path


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path) -> str:
    """A fresh SQLite tracking + registry store in tmp_path, active for the test."""
    import mlflow

    shutil.copyfile(empty_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # mlflow writes these two into os.environ itself: let monkeypatch undo them afterwards,
    # or every later subprocess (kedro run, packaging) inherits a dead test store.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment(
        "test", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment)
    yield uri
    if mlflow.active_run():
        mlflow.end_run()
    # MLflow also keeps both URIs in module globals, which monkeypatch cannot undo: forget them,
    # or a later MlflowClient(tracking_uri=...) would look its models up in this dead registry.
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    mlflow.set_registry_uri(None)  # type: ignore[arg-type]


# --- Spark: one session (one JVM) for every test that needs one ------------------------------


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The Spark engine's session as `kedro run --env spark` starts it (conf/spark/spark.yml),
    on two cores; Java missing is a failure in CI."""
    from credit_scoring.config.loader import config_loader
    from credit_scoring.config.spark import spark_settings
    from credit_scoring.engines.spark import start_session

    require_binary("java")
    settings = spark_settings(config_loader(env="spark")["spark"])
    session = start_session({**settings, "spark.master": "local[2]"})
    yield session
    session.stop()


# --- object storage: one S3 store (SeaweedFS) for every test that needs one -----------------


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """SeaweedFS's S3 on loopback with a real key and secret and the bucket credit-scoring
    (devtools/objectstore.py, what `make object-store` runs); weed missing fails in CI."""
    from credit_scoring.devtools.objectstore import new_store, weed_binary

    try:
        weed_binary()
    except FileNotFoundError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    store = new_store(tmp_path_factory.mktemp("object-store")).start(timeout=120)
    yield store
    store.stop()
