"""The images, built with a real Docker engine and run as the cluster runs them.

Read-only root filesystem (tmpfs only for /tmp), a non-root numeric user, every capability
dropped, no privilege escalation, host network on loopback (this machine allows no container
bridge). The service image is built from the session's bento; its base is Debian 12's own
python3 (no registry here), the same as python:3.11-slim for what the images need. The
pipeline image's Spark variant (target `spark`) runs the nightly Spark job on local cores and,
as Spark on Kubernetes starts them, an executor that takes a driver's tasks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.sandbox import make_project_copy, quick_training
from credit_scoring.ops.docker_engine import SYSTEM_CA_BUNDLE, Engine, engine, local_base_image
from credit_scoring.storage.clients import replace_client_features
from credit_scoring.storage.schema import EVENTS_TABLE
from credit_scoring.training.synthetic import generate_data
from tests.conftest import TEST_KEY, postgres_schema_url, require_binary
from tests.serving_fixtures import auth, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "10001:10001"
SERVICE_IMAGE_TARGET_MB = 700
SPARK_IMAGE_TARGET_MB = 2600  # measured 2,321 MB: Java 217 MB, the environment with PySpark
RESTRICTED = [
    "--network", "host",
    "--read-only",
    "--tmpfs", "/tmp:rw,size=512m,mode=1777",
    "--user", USER,
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
]  # fmt: skip
# Spark unpacks its JNI libraries (snappy for Parquet) into /tmp and maps them: /tmp must
# allow exec, as a Kubernetes emptyDir does (docker's --tmpfs is noexec by default).
RESTRICTED_SPARK = [
    "--tmpfs" if arg == "--tmpfs" else arg.replace("/tmp:rw,", "/tmp:rw,exec,")
    for arg in RESTRICTED
]


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    """The reachable engine, else a private dockerd (root); a skip locally, a failure in CI."""
    if not shutil.which("dockerd") and not Engine(host=os.environ.get("DOCKER_HOST")).reachable():
        require_binary("dockerd")
    try:
        context = engine()
        found = context.__enter__()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    try:
        yield found
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def base_image(docker: Engine) -> str:
    """CREDIT_SCORING_TEST_BASE_IMAGE (GitHub's runners pull python:3.11-slim), else a local
    Debian 12 base (no registry here)."""
    return os.environ.get("CREDIT_SCORING_TEST_BASE_IMAGE") or local_base_image(docker)


def give_to_app_user(*paths: Path) -> None:
    """Let the containers' user (10001) write there: chown as root, else open the mode."""
    for path in paths:
        if os.geteuid() == 0:
            os.chown(path, 10001, 10001)
        else:
            path.chmod(0o777 if path.is_dir() else 0o666)


def _ca_args(flag: str) -> list[str]:
    return [flag, str(SYSTEM_CA_BUNDLE)] if SYSTEM_CA_BUNDLE.exists() else []


@pytest.fixture(scope="session")
def service_image(docker: Engine, base_image: str, bento: str) -> str:
    """`make image-service`: credit-scoring image-service on the session's bento."""
    result = subprocess.run(
        [
            sys.executable, "-m", "credit_scoring.cli", "image-service",
            "--bento", bento,
            "--repository", "credit-scoring-service-test",
            "--base-image", base_image,
            *_ca_args("--ca-bundle"),
        ],
        env={**docker.env, "DOCKER": " ".join(docker.client)},
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def _build_pipeline(docker: Engine, base_image: str, tag: str, *target: str) -> str:
    """`make image-pipeline` (or, with ``--target spark``, `make image-pipeline-spark`): the
    Dockerfile at the top of the project. Both share its build stage (one engine, one cache)."""
    result = docker.run(
        "build", "--network", "host", "-t", tag, *target,
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--build-arg", "GIT_COMMIT=0123456789abcdef0123456789abcdef01234567",
        *(["--secret", f"id=ca,src={SYSTEM_CA_BUNDLE}"] if SYSTEM_CA_BUNDLE.exists() else []),
        str(PROJECT_ROOT),
        timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tag


@pytest.fixture(scope="session")
def pipeline_image(docker: Engine, base_image: str) -> str:
    return _build_pipeline(docker, base_image, "credit-scoring-pipeline-test:ci")


@pytest.fixture(scope="session")
def pipeline_spark_image(docker: Engine, base_image: str) -> str:
    return _build_pipeline(
        docker, base_image, "credit-scoring-pipeline-spark-test:ci", "--target", "spark"
    )


def _inspect(docker: Engine, image: str) -> dict[str, Any]:
    result = docker.run("image", "inspect", image)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)[0])


@pytest.fixture
def postgres_clients(client_features: pd.DataFrame) -> Iterator[str]:
    """A fresh PostgreSQL schema holding the trained project's client feature store."""
    for url in postgres_schema_url():
        replace_client_features(url, client_features, "client_id")
        yield url


class Container:
    def __init__(self, docker: Engine, name: str) -> None:
        self.docker, self.name = docker, name

    def logs(self) -> str:
        return self.logs_all()[-4000:]

    def logs_all(self) -> str:
        result = self.docker.run("logs", self.name)
        return result.stdout + result.stderr

    def running(self) -> bool:
        result = self.docker.run("inspect", "-f", "{{.State.Running}}", self.name)
        return result.stdout.strip() == "true"

    def remove(self) -> None:
        self.docker.run("rm", "-f", self.name, timeout=120)


def _start(docker: Engine, name: str, *args: str) -> Container:
    """``docker run -d`` with the cluster's restrictions; the test removes it."""
    result = docker.run("run", "-d", "--name", name, *RESTRICTED, *args)
    assert result.returncode == 0, result.stderr
    return Container(docker, name)


def _run_service(
    docker: Engine, image: str, database_url: str, journal: Path, port: int
) -> Container:
    journal.mkdir(parents=True, exist_ok=True)
    give_to_app_user(journal)  # the volume the cluster mounts (an emptyDir)
    return _start(
        docker, f"service-{port}",
        "-v", f"{journal}:/var/lib/credit-scoring/journal",
        "-e", "BENTOML_HOST=127.0.0.1",
        "-e", f"BENTOML_PORT={port}",
        "-e", f"CREDIT_SCORING_DATABASE_URL={database_url}",
        image,
    )  # fmt: skip


def _wait_ready(container: Container, url: str, timeout: float = 120) -> float:
    """Seconds until ``url`` answers 200; fails with the container's log if it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        assert container.running(), container.logs()
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 in {timeout:.0f} s:\n" + container.logs())


def _events(url: str) -> pd.DataFrame:
    engine_ = sa.create_engine(url)
    try:
        with engine_.connect() as conn:
            return pd.read_sql(sa.text(f"SELECT * FROM {EVENTS_TABLE}"), conn)
    finally:
        engine_.dispose()


def test_service_image_is_small_non_root_and_carries_its_lineage(
    docker: Engine, service_image: str, service_module: Any
) -> None:
    info = _inspect(docker, service_image)
    size_mb = info["Size"] / 1e6
    assert size_mb < SERVICE_IMAGE_TARGET_MB, f"{size_mb:.0f} MB"
    config = info["Config"]
    assert config["User"] == USER
    labels = config["Labels"]
    spec = service_module.SPEC
    assert labels["io.credit-scoring.model.name"] == spec.model_name
    assert labels["io.credit-scoring.model.version"] == spec.model_version
    assert labels["io.credit-scoring.mlflow.run-id"] == spec.run_id
    assert re.fullmatch(r"[0-9a-f]{32}", labels["io.credit-scoring.data.md5"])
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", labels["org.opencontainers.image.revision"])
    # the proxy's CA was a build secret: not in the environment, not in any layer's files
    assert not any("SSL_CERT_FILE" in e or "/run/secrets" in e for e in config["Env"])
    listing = docker.run(
        "run", "--rm", "--network", "host", "--entrypoint", "sh", service_image, "-c",
        "ls -A /run/secrets 2>/dev/null; id -u; python -c 'import kedro' 2>&1 | tail -1; "
        "ls /home/bentoml/bento/src/credit_scoring | tr '\\n' ' '",
    )  # fmt: skip
    lines = listing.stdout.split("\n")
    assert lines[0] == "10001", listing.stdout  # no secret file left, runs as 10001
    assert "No module named 'kedro'" in listing.stdout  # nothing of training in the image
    # the bento's code: the service and the layers below it, no test tools, no training
    packages = set(lines[2].split())
    assert {"serving", "core", "storage", "auth"} <= packages, listing.stdout
    assert not packages & {"devtools", "training", "pipelines", "ops"}, listing.stdout


def test_service_container_scores_a_known_client_from_postgres(
    docker: Engine,
    service_image: str,
    postgres_clients: str,
    client_features: pd.DataFrame,
    service_module: Any,
    tmp_path: Path,
) -> None:
    port = free_port()
    container = _run_service(docker, service_image, postgres_clients, tmp_path / "j", port)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(container, f"{base}/readyz")
        client_id = client_features["client_id"].iloc[0]
        response = httpx.get(f"{base}/clients/{client_id}/score", headers=auth(), timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decision"] in {"accept", "refuse"}
        assert body["model_version"] == service_module.SPEC.model_version
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        info = re.search(r"^credit_scoring_model_info\{(.*)\} 1\.0$", metrics, re.M)
        assert info, metrics[:2000]
        assert f'image="{service_image}"' in info.group(1)
        assert f'mlflow_run_id="{service_module.SPEC.run_id}"' in info.group(1)
        assert client_id not in metrics  # no pseudonym in telemetry
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = _events(postgres_clients)
            if len(events):
                break
            time.sleep(0.2)
        event = events.iloc[0]
        assert event["request_id"] == body["request_id"]
        assert event["image"] == service_image  # an event leads back to the image ...
        assert event["mlflow_run_id"] == service_module.SPEC.run_id  # ... and the run
    finally:
        container.remove()


def test_sigterm_under_load_loses_no_acknowledged_event(
    docker: Engine, service_image: str, postgres_clients: str, application: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    port = free_port()
    container = _run_service(docker, service_image, postgres_clients, tmp_path / "j", port)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        f"{base}/predict", json={"application": application}, headers=auth()
                    )
                except httpx.HTTPError:
                    continue  # refused while stopping: not acknowledged, nothing owed
                if response.status_code == 200:
                    acknowledged.append(response.json()["request_id"])

    try:
        _wait_ready(container, f"{base}/readyz")
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        before = len(acknowledged)
        docker.run("kill", "--signal", "TERM", container.name)
        exit_code = docker.run("wait", container.name, timeout=90).stdout.strip()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert before > 50, f"only {before} requests answered under load"
        stored = set(_events(postgres_clients)["request_id"])
        lost = [r for r in acknowledged if r not in stored]
        assert not lost, f"{len(lost)} of {len(acknowledged)} answered decisions not stored"
        assert exit_code == "0", container.logs()
    finally:
        stop.set()
        container.remove()


def test_kill_9_under_load_then_a_restart_on_the_same_volume_stores_every_answer(
    docker: Engine, service_image: str, postgres_clients: str, application: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    """The journal volume outlives the container (an emptyDir outlives a restart in the pod):
    the next container on it ships what the killed one answered but had not stored."""
    journal = tmp_path / "journal"
    port = free_port()
    container = _run_service(docker, service_image, postgres_clients, journal, port)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    try:
        _wait_ready(container, f"{base}/readyz")
        with httpx.Client(timeout=10) as client:
            for _ in range(200):
                response = client.post(
                    f"{base}/predict", json={"application": application}, headers=auth()
                )
                assert response.status_code == 200, response.text
                acknowledged.append(response.json()["request_id"])
        docker.run("kill", "--signal", "KILL", container.name)
    finally:
        container.remove()
    port = free_port()
    restarted = _run_service(docker, service_image, postgres_clients, journal, port)
    try:
        _wait_ready(restarted, f"http://127.0.0.1:{port}/readyz")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stored = set(_events(postgres_clients)["request_id"])
            if stored >= set(acknowledged):
                break
            time.sleep(0.5)
        assert not set(acknowledged) - stored, "answered decisions lost after kill -9"
        assert len(stored & set(acknowledged)) == len(acknowledged)  # each stored once
        assert _events(postgres_clients)["request_id"].is_unique
    finally:
        restarted.remove()


def test_pipeline_image_runs_kedro_on_mounted_data(
    docker: Engine, pipeline_image: str, tmp_path: Path
) -> None:
    root = make_project_copy(tmp_path / "project")
    generate_data(n_applications=400, output_dir=root / "data/01_raw")
    data = root / "data"
    give_to_app_user(data, *data.rglob("*"))
    result = docker.run(
        "run", "--rm", *RESTRICTED_SPARK,
        "-v", f"{data}:/app/data",
        "-e", f"CREDIT_SCORING_PSEUDONYMISATION_KEY={TEST_KEY}",
        "-e", "MLFLOW_TRACKING_URI=sqlite:////app/data/mlflow.db",
        pipeline_image,
        "kedro", "run", "--pipelines", "data_ingestion",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    applications = pd.read_parquet(data / "02_intermediate/applications_validated.parquet")
    assert len(applications) > 300
    assert applications["client_id"].str.fullmatch(r"[0-9a-f]{64}").all()  # pseudonymised
    # what only tests, benchmarks and demos use is not installed in production
    probe = docker.run(
        "run", "--rm", "--network", "host", "--entrypoint", "python", pipeline_image,
        "-c", "import credit_scoring.devtools",
    )  # fmt: skip
    assert probe.returncode != 0 and "No module named 'credit_scoring.devtools'" in probe.stderr


def test_pipeline_image_runs_the_retrain_trigger(
    docker: Engine, pipeline_image: str, tmp_path: Path
) -> None:
    port = free_port()
    database = tmp_path / "db"
    database.mkdir()
    give_to_app_user(database)
    container = _start(
        docker, f"trigger-{port}",
        "-v", f"{database}:/var/lib/trigger",
        "-e", "CREDIT_SCORING_ENVIRONMENT=staging",
        "-e", "CREDIT_SCORING_TRIGGER_TOKEN=s3cret-token",
        "-e", "CREDIT_SCORING_DATABASE_URL=sqlite:////var/lib/trigger/trigger.db",
        pipeline_image,
        "credit-scoring", "trigger", "--host", "127.0.0.1",
        "--port", str(port),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(container, f"{base}/healthz", timeout=60)
        forged = httpx.post(
            f"{base}/alerts", json={}, headers={"Authorization": "Bearer forged"}, timeout=5
        )
        assert forged.status_code == 401
    finally:
        container.remove()


@pytest.fixture
def mlflow_server(docker: Engine, pipeline_image: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The tracking server of deploy/k8s/base/mlflow.yaml, from the pipeline image:
    basic-auth on, artifacts served by the server, run as the cluster runs it."""
    state = tmp_path / "mlflow"
    state.mkdir()
    (state / "basic_auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        "database_uri = sqlite:////var/lib/mlflow/auth.db\n"
        "admin_username = admin\nadmin_password = test-admin-password-123\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    give_to_app_user(state, state / "basic_auth.ini")
    port = free_port()
    container = _start(
        docker, f"mlflow-{port}",
        "-v", f"{state}:/var/lib/mlflow",
        "-e", "MLFLOW_AUTH_CONFIG_PATH=/var/lib/mlflow/basic_auth.ini",
        "-e", "MLFLOW_FLASK_SERVER_SECRET_KEY=test-flask-secret",
        pipeline_image,
        "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db",
        "--artifacts-destination", "/var/lib/mlflow/artifacts", "--serve-artifacts",
        "--app-name", "basic-auth",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(container, f"{url}/health", timeout=90)
        yield {"url": url, "auth": ("admin", "test-admin-password-123"), "container": container}
    finally:
        container.remove()


def test_pipeline_image_serves_mlflow_with_authentication(mlflow_server: dict[str, Any]) -> None:
    search = f"{mlflow_server['url']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search, timeout=10).status_code == 401
    assert httpx.get(search, auth=("admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(search, auth=mlflow_server["auth"], timeout=10).is_success


def test_a_training_job_in_the_image_registers_a_champion_on_the_tracking_server(
    docker: Engine, pipeline_image: str, mlflow_server: dict[str, Any], tmp_path: Path
) -> None:
    """The retraining Job's set-up: the pipeline image, read-only and non-root, `KEDRO_ENV=prod`,
    data on a volume, MLflow behind basic-auth with its artifacts served by the server."""
    root = make_project_copy(tmp_path / "project")
    quick_training(root)
    generate_data(n_applications=2000, output_dir=root / "data/01_raw")
    give_to_app_user(*[root / "data", *(root / "data").rglob("*")])
    user, password = mlflow_server["auth"]
    result = docker.run(
        "run", "--rm", *RESTRICTED,
        "-v", f"{root / 'data'}:/app/data",
        "-v", f"{root / 'conf/base'}:/app/conf/base:ro",  # the quick search
        "-e", "KEDRO_ENV=prod",
        "-e", f"CREDIT_SCORING_PSEUDONYMISATION_KEY={TEST_KEY}",
        "-e", f"MLFLOW_TRACKING_URI={mlflow_server['url']}",
        "-e", f"MLFLOW_TRACKING_USERNAME={user}",
        "-e", f"MLFLOW_TRACKING_PASSWORD={password}",
        pipeline_image, "kedro", "run",
        timeout=1500,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = f"{mlflow_server['url']}/api/2.0/mlflow"
    champion = httpx.get(
        f"{api}/registered-models/alias",
        params={"name": "credit_scoring", "alias": "champion"},
        auth=mlflow_server["auth"],
        timeout=10,
    )
    assert champion.status_code == 200, champion.text
    run_id = champion.json()["model_version"]["run_id"]
    run = httpx.get(f"{api}/runs/get", params={"run_id": run_id}, auth=mlflow_server["auth"])
    params = run.json()["run"]["data"]["params"]
    tags = {t["key"]: t["value"] for t in run.json()["run"]["data"]["tags"]}
    assert tags["git_commit"] == "0123456789abcdef0123456789abcdef01234567"  # the image's
    # each parameter sent once per run, not before every node (one request per key)
    sent = mlflow_server["container"].logs_all().count("/runs/log-parameter")
    assert len(params) > 100 and sent <= len(params), (sent, len(params))


# --- the Spark variant -----------------------------------------------------------------------

K8S_BASE = PROJECT_ROOT / "deploy/k8s/base"


def _spark_job_container() -> dict[str, Any]:
    """The driver container of the nightly Spark CronJob, as the cluster runs it."""
    (cronjob,) = [
        o
        for o in yaml.safe_load_all((K8S_BASE / "spark-processing.yaml").read_text())
        if o["kind"] == "CronJob"
    ]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_spark_image_adds_java_17_and_the_spark_group_and_stays_locked_down(
    docker: Engine, pipeline_spark_image: str
) -> None:
    info = _inspect(docker, pipeline_spark_image)
    size_mb = info["Size"] / 1e6
    assert size_mb < SPARK_IMAGE_TARGET_MB, f"{size_mb:.0f} MB"
    config = info["Config"]
    assert config["User"] == USER
    assert config["Labels"]["org.opencontainers.image.title"] == "credit-scoring-pipeline-spark"
    env = dict(e.split("=", 1) for e in config["Env"])
    # a read-only root: home, Spark's scratch space and the JVM's temporary files under /tmp
    assert env["HOME"] == "/tmp" and env["SPARK_LOCAL_DIRS"].startswith("/tmp/")
    assert env["SPARK_LOCAL_IP"] == "127.0.0.1"  # a local run binds loopback only
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == "/app/.venv/bin/python"
    assert not any("SSL_CERT_FILE" in e or "/run/secrets" in e for e in config["Env"])
    probe = docker.run(
        "run", "--rm", *RESTRICTED, pipeline_spark_image, "sh", "-c",
        "java -version 2>&1 | head -1; "
        "python -c 'import pyspark, narwhals, os; print(pyspark.__version__); "
        "print(os.path.realpath(os.environ[\"SPARK_HOME\"]) == os.path.dirname(pyspark.__file__))'; "
        "ls -A /run/secrets 2>/dev/null | wc -l; python -c 'import credit_scoring.devtools' 2>&1 | tail -1",
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    java, version, spark_home, secrets, devtools = probe.stdout.strip().split("\n")
    assert re.match(r'openjdk version "17\.', java), java
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    (locked,) = [p["version"] for p in lock["package"] if p["name"] == "pyspark"]
    assert version == locked and spark_home == "True"
    assert secrets == "0" and "No module named 'credit_scoring.devtools'" in devtools


def test_spark_image_runs_the_nightly_spark_job_on_local_cores(
    docker: Engine, pipeline_spark_image: str, tmp_path: Path
) -> None:
    """The CronJob's own command and the cluster's spark.yml, with spark.master local[2] and
    free ports (no cluster here), read-only, non-root, no capabilities; PYSPARK_SUBMIT_ARGS
    carries the driver's address as the Job passes it."""
    root = make_project_copy(tmp_path / "project")
    generate_data(n_applications=400, output_dir=root / "data/01_raw")
    data = root / "data"
    give_to_app_user(data, *data.rglob("*"))
    spark_yml = yaml.safe_load((K8S_BASE / "spark.yml").read_text())
    spark_yml["spark.master"] = "local[2]"
    for key in ("spark.driver.port", "spark.driver.blockManager.port", "spark.blockManager.port"):
        spark_yml[key] = free_port()
    (tmp_path / "spark.yml").write_text(yaml.safe_dump(spark_yml))
    (tmp_path / "spark.yml").chmod(0o644)
    container = _spark_job_container()
    result = docker.run(
        "run", "--rm", *RESTRICTED_SPARK,
        "-v", f"{data}:/app/data",
        "-v", f"{tmp_path / 'spark.yml'}:/app/conf/spark/spark.yml:ro",
        "-e", f"CREDIT_SCORING_PSEUDONYMISATION_KEY={TEST_KEY}",
        "-e", "MLFLOW_TRACKING_URI=sqlite:////app/data/mlflow.db",
        "-e", "PYSPARK_SUBMIT_ARGS=--conf spark.driver.host=127.0.0.1 pyspark-shell",
        pipeline_spark_image,
        *container["command"],
        timeout=900,
    )  # fmt: skip
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "Spark's default log4j profile" in result.stderr  # the session started, in the JVM
    # the spark environment's catalog: Spark's own Parquet folders under data/spark/
    applications = pd.read_parquet(data / "spark/02_intermediate/applications_validated.parquet")
    assert len(applications) > 300
    assert applications["client_id"].str.fullmatch(r"[0-9a-f]{64}").all()  # pseudonymised
    model_input = pd.read_parquet(data / "spark/05_model_input/model_input_table.parquet")
    assert len(model_input) > 300  # processed: one row a client, features joined
    assert set(model_input["client_id"]) <= set(applications["client_id"])


DRIVER = """
import json, os, sys
from pyspark.sql import SparkSession

master, port = sys.argv[1], sys.argv[2]
spark = (
    SparkSession.builder.master(master).config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.port", port).config("spark.ui.enabled", "false").getOrCreate()
)
conf = spark.sparkContext.getConf()
print("APP=" + json.dumps({
    "id": spark.sparkContext.applicationId,
    "java": conf.get("spark.executor.extraJavaOptions", ""),
    "pod": conf.get("spark.kubernetes.driver.pod.name", ""),
}), flush=True)

def where(batches):
    import os, sys
    for batch in batches:
        yield batch.assign(
            pod=os.environ.get("SPARK_EXECUTOR_POD_NAME", ""), exe=sys.executable, uid=os.getuid()
        )

rows = spark.range(0, 100, numPartitions=4).mapInPandas(
    where, "id long, pod string, exe string, uid long"
).toPandas()
print("RESULT=" + json.dumps({
    "sum": int(rows["id"].sum()), "pods": sorted(set(rows["pod"])),
    "exe": sorted(set(rows["exe"])), "uid": sorted({int(u) for u in rows["uid"]}),
}), flush=True)
spark.stop()
"""


def _line(container: Container, prefix: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in container.logs_all().splitlines():
            if line.startswith(prefix):
                return dict(json.loads(line.removeprefix(prefix)))
        assert container.running(), container.logs()
        time.sleep(1)
    pytest.fail(f"no {prefix} line in {timeout:.0f} s:\n" + container.logs())


def test_a_spark_executor_started_as_kubernetes_starts_it_runs_the_drivers_tasks(
    docker: Engine, pipeline_spark_image: str, tmp_path: Path
) -> None:
    """The executor pods' command (spark-executor, deploy/docker/spark-executor.sh) with the
    environment Spark's Kubernetes backend gives them: the driver's URL, the executor's id,
    cores, memory, pod name and address, and the driver's executor JVM options as
    SPARK_JAVA_OPT_<n>. No API server here: a driver with no executors of its own (a standalone
    master without workers) gets this one, and its tasks run there, in the image's Python."""
    refused = docker.run(
        "run", "--rm", *RESTRICTED, pipeline_spark_image, "spark-executor", "executor"
    )
    assert refused.returncode == 2 and "SPARK_DRIVER_URL is not set" in refused.stderr
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "driver.py").chmod(0o644)
    tmp_path.chmod(0o755)
    master_port, driver_port = free_port(), free_port()
    master = _start(
        docker, f"spark-master-{master_port}", pipeline_spark_image, "sh", "-c",
        'exec java -cp "$SPARK_HOME/jars/*" org.apache.spark.deploy.master.Master '
        f"--host 127.0.0.1 --port {master_port} --webui-port {free_port()}",
    )  # fmt: skip
    containers = [master]
    try:
        driver = _start(
            docker, f"spark-driver-{driver_port}",
            "-v", f"{tmp_path / 'driver.py'}:/job/driver.py:ro",
            # how the CronJob hands Spark what spark.yml cannot know (spark-processing.yaml)
            "-e", "PYSPARK_SUBMIT_ARGS=--conf spark.kubernetes.driver.pod.name=driver-0 pyspark-shell",
            pipeline_spark_image,
            "python", "/job/driver.py", f"spark://127.0.0.1:{master_port}", str(driver_port),
        )  # fmt: skip
        containers.append(driver)
        app = _line(driver, "APP=", timeout=180)
        assert app["pod"] == "driver-0"
        java_options = [*app["java"].split(), f"-Dspark.driver.port={driver_port}"]
        executor = _start(
            docker, f"spark-executor-{driver_port}",
            "-e", f"SPARK_DRIVER_URL=spark://CoarseGrainedScheduler@127.0.0.1:{driver_port}",
            "-e", "SPARK_EXECUTOR_ID=1",
            "-e", "SPARK_EXECUTOR_CORES=2",
            "-e", "SPARK_EXECUTOR_MEMORY=512m",
            "-e", f"SPARK_APPLICATION_ID={app['id']}",
            "-e", "SPARK_EXECUTOR_POD_IP=127.0.0.1",
            "-e", "SPARK_EXECUTOR_POD_NAME=credit-scoring-spark-exec-1",
            "-e", "SPARK_RESOURCE_PROFILE_ID=0",
            *[a for i, o in enumerate(java_options) for a in ("-e", f"SPARK_JAVA_OPT_{i}={o}")],
            pipeline_spark_image, "spark-executor", "executor",
        )  # fmt: skip
        containers.append(executor)
        result = _line(driver, "RESULT=", timeout=300)
        assert result == {
            "sum": 4950,
            "pods": ["credit-scoring-spark-exec-1"],  # every task ran in the executor
            "exe": ["/app/.venv/bin/python"],
            "uid": [10001],
        }, executor.logs()
        assert docker.run("wait", executor.name, timeout=120).stdout.strip() == "0"
    finally:
        for container in containers:
            container.remove()
