"""The built bento under a real `bentoml serve` on loopback: client, metrics, fuzzing, shutdown."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from credit_scoring.storage.events import read_events
from tests.serving_fixtures import auth, free_port, start_server, stop_server, token

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(bento: str, trained_project: Path, tmp_path_factory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("serve")
    db = folder / "serving.db"
    shutil.copy(trained_project / "data/09_serving/serving.db", db)  # the pipeline's feature store
    url = f"sqlite:///{db}"
    port = free_port()
    env = dict(
        os.environ,
        CREDIT_SCORING_DATABASE_URL=url,
        CREDIT_SCORING_EVENT_FLUSH_SECONDS="5",  # events still queued when SIGTERM arrives
        CREDIT_SCORING_EVENT_BATCH_SIZE="100000",
    )
    command = [sys.executable, "-m", "bentoml", "serve", bento]
    process, base = start_server(
        [*command, "--host", "127.0.0.1", "--port", str(port)], env, folder, port
    )
    info = {"url": base, "db": url, "process": process, "log": folder / "serve.log"}
    yield info
    stop_server(process)


def test_the_deploy_smoke_test_passes_on_a_served_bento_and_fails_elsewhere(server):
    from credit_scoring.ops.smoke import check

    assert check(server["url"], wait_seconds=5) == []
    problems = check(f"http://127.0.0.1:{free_port()}", wait_seconds=0)  # nothing listens
    assert problems and "unreachable" in problems[0]


def test_scoring_through_the_bentoml_client(server, application, client_features):
    import bentoml

    client_id = client_features["client_id"].iloc[0]
    with bentoml.SyncHTTPClient(server["url"], token=token()) as client:
        prediction = client.predict(application=application)
        explanation = client.explain(application=application, client_id=client_id)
    assert prediction["decision"] in ("accept", "refuse")
    assert explanation["probability"] == pytest.approx(prediction["probability"], abs=1e-12)
    by_id = httpx.get(f"{server['url']}/clients/{client_id}/score", headers=auth()).json()
    assert by_id["probability"] == pytest.approx(prediction["probability"], abs=1e-12)


def test_prometheus_metrics(server, application):
    httpx.post(f"{server['url']}/predict", headers=auth(), json={"application": application})
    httpx.post(
        f"{server['url']}/predict",
        json={"application": {**application, "CODE_GENDER": "?"}},
        headers=auth(),
    )
    assert httpx.get(f"{server['url']}/model/card").status_code == 401
    scoring = auth(role="scoring", subject="svc-metrics")
    assert httpx.get(f"{server['url']}/clients/search", headers=scoring).status_code == 403
    text = httpx.get(f"{server['url']}/metrics").text
    for reason, endpoint in (("no_token", "/model/card"), ("forbidden", "/clients/search")):
        line = f'credit_scoring_rejected_requests_total{{endpoint="{endpoint}",reason="{reason}"}}'
        assert re.search(f"^{re.escape(line)} [1-9]", text, re.M), reason
    decisions = sum(
        float(v)
        for v in re.findall(r'^credit_scoring_decisions_total\{decision="\w+"\} (\S+)', text, re.M)
    )
    assert decisions >= 1
    assert re.search(
        r'^credit_scoring_rejected_requests_total\{endpoint="/predict",reason="invalid"\} [1-9]',
        text,
        re.M,
    )
    assert re.search(r"^credit_scoring_predicted_probability_count \S+", text, re.M)
    assert re.search(r'^credit_scoring_model_info\{.*model_version="\d+".*\} 1\.0', text, re.M)
    assert "bentoml_service_request_duration_seconds" in text


def test_fuzzing_finds_no_server_error_and_no_schema_violation(server, tmp_path):
    """schemathesis against the served OpenAPI: at least 500 generated cases."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server['url']}/docs.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "200",
            # The coverage phase hits an internal error of schemathesis 4.32 / hypothesis
            # ("AST constructor recursion depth mismatch" describing a filter lambda) on the
            # path parameter: generated examples and fuzzing only.
            "--phases",
            "examples,fuzzing",
            "--seed",
            "20261122",
            "--header",
            f"Authorization: Bearer {token()}",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    generated = int(re.search(r"(\d+) generated", out).group(1))
    assert generated >= 500, out[-2000:]


def test_clean_shutdown_loses_no_acknowledged_prediction(server, application):
    acknowledged = []
    with httpx.Client(base_url=server["url"], headers=auth()) as client:
        for i in range(200):
            body = {"application": {**application, "AMT_CREDIT": 100_000.0 + i}}
            response = client.post("/predict", json=body)
            assert response.status_code == 200
            acknowledged.append(response.json()["request_id"])
    process = server["process"]
    os.killpg(process.pid, signal.SIGTERM)  # events are still queued (5 s flush period)
    code = process.wait(timeout=60)  # raises if the server does not stop
    assert code == 0, f"exit code {code}:\n" + server["log"].read_text()[-3000:]
    stored = set(read_events(server["db"])["request_id"])
    missing = [r for r in acknowledged if r not in stored]
    assert not missing, (
        f"{len(missing)} acknowledged prediction(s) lost:\n" + server["log"].read_text()[-3000:]
    )


def test_make_serve_uses_the_projects_database(bento, trained_project, client_features, tmp_path):
    """As the README says: `make serve`, no database variable: the project's own database."""
    make = shutil.which("make")
    assert make, "make is needed (CI installs it)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_SCORING_")}
    # a user's shell: not inside the test run's virtual environment (make brings its own)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    port = free_port()
    repo = Path(__file__).resolve().parents[2]
    command = [make, "-s", "-C", str(repo), "serve", f"PROJECT_DIR={trained_project}"]
    process, base = start_server(command, {**env, "PORT": str(port)}, tmp_path, port)
    database = f"sqlite:///{trained_project / 'data/09_serving/serving.db'}"
    try:
        before = len(read_events(database))
        client_id = client_features["client_id"].iloc[3]
        response = httpx.get(f"{base}/clients/{client_id}/score", headers=auth(), timeout=10)
        assert response.status_code == 200, response.text
        request_id = response.json()["request_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            events = read_events(database)
            if not events.empty and request_id in set(events["request_id"]):
                break
            time.sleep(0.3)
        assert len(events) == before + 1
        event = events.set_index("request_id").loc[request_id]
        assert event["client_id"] == client_id and event["endpoint"] == "clients_score"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    bento_dir = Path(os.environ["BENTOML_HOME"]) / "bentos"
    assert not list(bento_dir.rglob("*.db")), "a database was written inside the bento store"
