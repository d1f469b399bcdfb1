"""One trained project for all serving and dashboard tests: a real `kedro run`, a champion, a BentoML model.

The project runs once per session in a throw-away copy (3,000 generated applications, short
searches), so the API is tested against a model, a feature store and outlier bounds that the
real pipelines produced. BentoML's store is a temporary BENTOML_HOME (set in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pandas as pd
import pytest

from credit_scoring.devtools.processes import bentoml_serve, free_port
from credit_scoring.devtools.sandbox import kedro_run, make_project_copy, quick_training
from credit_scoring.training.synthetic import generate_data
from tests.conftest import TEST_KEY


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project_copy(tmp_path_factory.mktemp("served"))
    # The usual champion (LightGBM): dummy + LightGBM only, a short search
    # (tests/serving/test_scorer.py covers the other candidates).
    quick_training(root)
    generate_data(n_applications=3000, output_dir=root / "data/01_raw")
    result = kedro_run(root, key=TEST_KEY, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return root


@pytest.fixture(scope="session")
def serving_db(trained_project: Path) -> str:
    """The project's own database: the pipeline filled its client feature store."""
    return f"sqlite:///{trained_project / 'data/09_serving/serving.db'}"


@pytest.fixture(scope="session")
def bento_model(trained_project: Path) -> str:
    """`credit-scoring build --no-build`: the tested import step."""
    env = {k: v for k, v in os.environ.items() if "MLFLOW_" not in k}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{trained_project / 'mlflow.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "credit_scoring.cli",
            "build",
            "--no-build",
            "--project",
            str(trained_project),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    import bentoml

    return str(bentoml.models.get("credit_scoring:latest").tag)


@pytest.fixture(scope="session")
def service_module(bento_model: str, serving_db: str) -> Iterator[ModuleType]:
    """The service module, imported with the test model and database."""
    saved = {
        k: os.environ.get(k) for k in ("CREDIT_SCORING_MODEL_TAG", "CREDIT_SCORING_DATABASE_URL")
    }
    os.environ["CREDIT_SCORING_MODEL_TAG"] = bento_model
    os.environ["CREDIT_SCORING_DATABASE_URL"] = serving_db
    assert "credit_scoring.serving.service" not in sys.modules, "imported before its settings"
    module = importlib.import_module("credit_scoring.serving.service")
    yield module
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def token(role: str = "advisor", subject: str = "advisor-test") -> str:
    """A fresh development token (the services in tests run in development)."""
    from credit_scoring.auth.tokens import mint_development_token

    return mint_development_token(subject, [role])


def bearer(role: str = "advisor", subject: str = "advisor-test") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, subject)}"}


auth = bearer


@pytest.fixture(scope="session")
def asgi_app(service_module: ModuleType) -> Iterator[Any]:
    """The service's ASGI app, started (lifespan) once for the session."""
    from starlette.testclient import TestClient

    app = service_module.CreditScoring.to_asgi()
    with TestClient(app):
        yield app


@pytest.fixture(scope="session")
def http(asgi_app: Any) -> Any:
    """HTTP through `to_asgi()` with a test client, as an advisor (a development token)."""
    from starlette.testclient import TestClient

    return TestClient(asgi_app, headers=bearer())


@pytest.fixture(scope="session")
def anonymous(asgi_app: Any) -> Any:
    """The same app, without a token."""
    from starlette.testclient import TestClient

    return TestClient(asgi_app)


@pytest.fixture(scope="session")
def primary(trained_project: Path) -> pd.DataFrame:
    return pd.read_parquet(trained_project / "data/03_primary/applications_primary.parquet")


@pytest.fixture(scope="session")
def client_features(trained_project: Path, serving_db: str) -> pd.DataFrame:
    from credit_scoring.datasets import ClientFeatureStoreDataset

    return ClientFeatureStoreDataset(serving_db).load()


@pytest.fixture(scope="session")
def application(service_module: ModuleType, client_features: pd.DataFrame) -> dict[str, Any]:
    """A valid request body: one known client's stored features."""
    from credit_scoring.core.spec import json_records

    spec = service_module.SPEC
    return json_records(client_features.head(1), spec.request_columns())[0]


@pytest.fixture(scope="session")
def bento(bento_model: str) -> str:
    """`make build`'s second half: `bentoml build` of bentofile.yaml (the model is imported)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from credit_scoring.ops.packaging import build_bento; "
            "print(build_bento(sys.argv[1]))",
            bento_model,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1]
    assert tag.startswith("credit_scoring:")
    return tag


def start_server(
    command: list[str], env: dict[str, str], folder: Path, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server in its own process group; return it once /readyz answers 200."""
    log = (folder / "serve.log").open("w")
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        assert process.poll() is None, (folder / "serve.log").read_text()[-3000:]
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    pytest.fail("the server was not ready in 180 s:\n" + (folder / "serve.log").read_text()[-3000:])


def stop_server(process: subprocess.Popen[bytes], timeout: float = 60) -> int | None:
    """SIGTERM to the server's process group; then SIGKILL to whatever of it is left
    (workers a process manager restarted, event shippers): no process outlives a test."""
    import psutil

    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    code = None
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    else:
        code = process.returncode
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    return code


@pytest.fixture(scope="session")
def api_server(bento: str, trained_project: Path, tmp_path_factory: pytest.TempPathFactory):
    """`bentoml serve` of the bento on the trained project's database (one for the session:
    the dashboard's tests and benchmark talk to it as advisors do)."""
    import shutil

    folder = tmp_path_factory.mktemp("api")
    db = folder / "serving.db"
    shutil.copy(trained_project / "data/09_serving/serving.db", db)  # the pipeline's store
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CREDIT_SCORING_")},
        "CREDIT_SCORING_DATABASE_URL": f"sqlite:///{db}",
    }
    process, url = start_server(bentoml_serve(bento, port), env, folder, port)
    yield {"url": url, "db": f"sqlite:///{db}", "process": process, "log": folder / "serve.log"}
    stop_server(process)


@pytest.fixture(scope="session")
def xgboost_trained(primary: pd.DataFrame, service_module: ModuleType, parameters: dict[str, Any]):
    """An XGBoost candidate fitted by the training code on the trained project's rows (in this
    process: how it was trained does not matter to the service, which loads the booster)."""
    from credit_scoring.config.data_science import Candidate, CostParams
    from credit_scoring.core.encoding import category_codes
    from credit_scoring.core.processing import load_processing
    from credit_scoring.training.modeling import FitContext, fit_candidate

    spec = service_module.SPEC
    x = primary[spec.features]
    declared = {n: c.allowed for n, c in spec.contract.columns.items() if c.allowed}
    ctx = FitContext(
        groups=load_processing(parameters["data_processing"]).imputation,
        categories=category_codes(x, declared),
        folds=2,
        random_state=0,
        monotone_increasing=tuple(parameters["data_science"]["monotone_increasing"]),
    )
    candidate = Candidate(kind="xgboost", fixed={"n_estimators": 60, "max_depth": 3})
    y = primary[spec.contract.target.column].to_numpy()
    return fit_candidate("xgboost", candidate, x, y, ctx, CostParams())
