"""The DVC remote and MLflow's artifact store on a real S3 store (SeaweedFS on loopback).

What train.yml and `make build` do against S3: a DVC stage's outputs pushed, a fresh clone
pulls them and finds the stage up to date; an MLflow server whose artifacts live in the
bucket registers the champion, and `credit-scoring build` imports it into BentoML through
that server, holding no bucket key. Wrong keys and a missing bucket are refused, the setting
named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml

from credit_scoring.core.spec import MODEL_DIR, SERVING_ARTIFACTS, SPEC_FILE
from credit_scoring.devtools.processes import free_port, mlflow_server
from credit_scoring.ops.object_storage import (
    ObjectStoreError,
    check,
    dvc_remote_url,
    load_settings,
    mlflow_artifacts_destination,
)
from tests.conftest import copy_git_files
from tests.serving_fixtures import stop_server

pytestmark = pytest.mark.integration

DVC = [sys.executable, "-m", "dvc"]
CLI = [sys.executable, "-m", "credit_scoring.cli"]
# The stage pushed and pulled: the first of the pipeline (its raw tables are real DVC
# outputs); the later stages' outputs travel the same way, only slower to make.
STAGE = "generate_synthetic_data"
ROWS = 3000
NAME = "credit_scoring"


def _env(store: Any | None, **extra: str) -> dict[str, str]:
    """A clean environment: no S3, MLflow or project setting of the caller; ``store``'s."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MLFLOW_", "CREDIT_SCORING_"))
    }
    env.update(
        DO_NOT_TRACK="1",
        KEDRO_DISABLE_TELEMETRY="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.org",
    )
    if store is not None:
        env.update(store.environment())
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> Any:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _keys(store: Any, prefix: str) -> dict[str, int]:
    """Every object under ``prefix`` in the bucket, with its size."""
    pages = (
        store.client().get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
    )
    return {item["Key"]: item["Size"] for page in pages for item in page.get("Contents", [])}


# --- DVC ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dvc_origin(tmp_path_factory: pytest.TempPathFactory, object_store: Any) -> Path:
    """A git repository of the project whose first stage ran (`dvc repro`), its lock
    committed and its outputs pushed to s3://<bucket>/dvc."""
    origin = tmp_path_factory.mktemp("dvc") / "origin"
    copy_git_files(origin)
    params = origin / "conf/base/parameters_synthetic.yml"
    synthetic = yaml.safe_load(params.read_text())
    synthetic["synthetic"]["n_applications"] = ROWS  # small tables: seconds, not a minute
    params.write_text(yaml.safe_dump(synthetic, sort_keys=False))
    env = _env(object_store)
    _run(["git", "init", "-q", "-b", "main"], origin, env)
    _run(["git", "add", "-A"], origin, env)
    _run(["git", "commit", "-q", "-m", "project"], origin, env)
    _run([*DVC, "repro", STAGE], origin, env)
    _run(["git", "commit", "-q", "-am", "dvc.lock of the first stage"], origin, env)
    _run([*CLI, "object-store", "dvc-remote", "--project", str(origin)], origin, env)
    _run([*DVC, "push", STAGE], origin, env)
    return origin


def _stage_outs(project: Path) -> dict[str, str]:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for out in lock["stages"][STAGE]["outs"]}


def test_a_fresh_clone_pulls_the_stage_from_s3_and_finds_it_up_to_date(
    dvc_origin: Path, object_store: Any, tmp_path: Path
):
    outs = _stage_outs(dvc_origin)
    assert len(outs) == 3
    stored = _keys(object_store, "dvc/")
    for path, md5 in outs.items():  # DVC 3's layout: files/md5/<2 hex>/<rest>
        key = f"dvc/files/md5/{md5[:2]}/{md5[2:]}"
        assert stored.get(key) == (dvc_origin / path).stat().st_size, key

    env = _env(object_store)
    _run(["git", "clone", "-q", str(dvc_origin), str(tmp_path / "clone")], tmp_path, env)
    clone = tmp_path / "clone"
    assert not (clone / ".dvc/config.local").exists()  # the repository names no bucket
    assert not any((clone / path).exists() for path in outs)
    # what a CI job does with the settings from its secrets, then `dvc pull`
    configured = _run([*CLI, "object-store", "dvc-remote"], clone, env).stdout
    assert dvc_remote_url(object_store.bucket) in configured
    _run([*DVC, "pull", STAGE], clone, env)
    for path in outs:
        assert (clone / path).read_bytes() == (dvc_origin / path).read_bytes(), path

    assert "up to date" in _run([*DVC, "status", STAGE], clone, env).stdout
    repro = _run([*DVC, "repro", STAGE], clone, env)
    assert "Running stage" not in repro.stdout + repro.stderr
    assert "didn't change" in repro.stdout + repro.stderr


def test_dvc_with_a_wrong_secret_is_refused(dvc_origin: Path, object_store: Any):
    env = _env(object_store, AWS_SECRET_ACCESS_KEY="not-the-secret")
    status = _run([*DVC, "status", "--cloud", STAGE], dvc_origin, env, ok=False)
    assert status.returncode != 0
    assert "SignatureDoesNotMatch" in status.stderr, status.stderr[-2000:]


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret", ["AWS_SECRET_ACCESS_KEY", "refused"]),
        ("AWS_ACCESS_KEY_ID", "NOSUCHKEY", ["AWS_ACCESS_KEY_ID", "NOSUCHKEY"]),
        (
            "CREDIT_SCORING_S3_BUCKET",
            "no-such-bucket",
            ["bucket 'no-such-bucket' does not exist", "CREDIT_SCORING_S3_BUCKET"],
        ),
        ("CREDIT_SCORING_S3_BUCKET", "Not_A_Bucket", ["CREDIT_SCORING_S3_BUCKET", "3-63"]),
        ("CREDIT_SCORING_S3_BUCKET", "", ["CREDIT_SCORING_S3_BUCKET is not set"]),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9", ["Cannot reach", "127.0.0.1:9"]),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(
    object_store: Any,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    value: str,
    named: list[str],
):
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, given in {**object_store.environment(), setting: value}.items():
        monkeypatch.setenv(key, given)
    if not value:
        monkeypatch.delenv(setting)
    with pytest.raises(ObjectStoreError) as refused:
        check(load_settings())
    for words in named:
        assert words in str(refused.value)
    assert object_store.secret_key not in str(refused.value)


def test_the_check_command_exits_2_with_the_reason(object_store: Any, tmp_path: Path):
    env = _env(object_store, AWS_SECRET_ACCESS_KEY="not-the-secret")
    result = _run([*CLI, "object-store", "check"], tmp_path, env, ok=False)
    assert result.returncode == 2
    assert f"refused the secret of access key {object_store.access_key}" in result.stderr
    ok = _run([*CLI, "object-store", "check"], tmp_path, _env(object_store)).stdout
    assert f"Bucket {object_store.bucket} at {object_store.endpoint}" in ok


def test_the_dvc_remote_is_not_written_for_a_missing_bucket(dvc_origin: Path, object_store: Any):
    before = (dvc_origin / ".dvc/config.local").read_text()
    env = _env(object_store, CREDIT_SCORING_S3_BUCKET="no-such-bucket")
    result = _run([*CLI, "object-store", "dvc-remote"], dvc_origin, env, ok=False)
    assert result.returncode == 2 and "no-such-bucket" in result.stderr
    assert (dvc_origin / ".dvc/config.local").read_text() == before


def test_the_store_checks_signatures(object_store: Any):
    from botocore.exceptions import ClientError

    object_store.client().put_object(Bucket=object_store.bucket, Key="probe", Body=b"1")
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        object_store.client(secret="wrong").get_object(Bucket=object_store.bucket, Key="probe")


# --- MLflow -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_on_s3(
    object_store: Any, tmp_path_factory: pytest.TempPathFactory, empty_mlflow_db: Path
) -> Iterator[str]:
    """`mlflow server`: SQLite backend, artifacts proxied to s3://<bucket>/mlflow."""
    folder = tmp_path_factory.mktemp("mlflow-s3")
    shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")  # migrated once per session
    port = free_port()
    command = mlflow_server(
        f"sqlite:///{folder / 'mlflow.db'}", mlflow_artifacts_destination(object_store.bucket), port
    )
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=_env(object_store),  # the server alone holds the bucket's keys
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    # ~15 s on an idle machine; minutes when other jobs share its two cores
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
        if time.monotonic() > deadline:
            stop_server(process)
            pytest.fail("mlflow server not ready in 300 s:\n" + (folder / "server.log").read_text())
        time.sleep(0.5)
    yield url
    stop_server(process)


def register_through(server: str, project: Path, work: Path) -> str:
    """The trained project's champion registered on ``server`` the way the pipeline does it
    (registry.log_model, its serving artifacts in the run, the gate's decision recorded);
    returns the new version."""
    import mlflow
    from mlflow import MlflowClient

    from credit_scoring.training.registry import (
        CHAMPION,
        ChampionScore,
        decide,
        load_model,
        log_model,
        record_decision,
    )

    source_uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(source_uri)
    mlflow.set_registry_uri(source_uri)
    champion = MlflowClient().get_model_version_by_alias(NAME, CHAMPION)
    model = load_model(f"models:/{NAME}@{CHAMPION}")
    serving = mlflow.artifacts.download_artifacts(
        run_id=champion.run_id, artifact_path=SERVING_ARTIFACTS, dst_path=str(work)
    )
    tags = MlflowClient().get_run(champion.run_id).data.tags
    gate = json.loads((project / "data/08_reporting/gate_report.json").read_text())
    primary = pd.read_parquet(project / "data/03_primary/applications_primary.parquet")

    mlflow.set_tracking_uri(server)
    mlflow.set_registry_uri(server)
    mlflow.set_experiment("credit_scoring")
    with mlflow.start_run():
        mlflow.set_tags({k: tags[k] for k in ("git_commit", "dvc_model_input_md5") if k in tags})
        info = log_model(model, primary, NAME)
        mlflow.log_artifacts(serving, SERVING_ARTIFACTS)
    version = str(info.registered_model_version)
    decision = decide(gate["challenger"], ChampionScore(), gate["dummy"], auc_tolerance=0.01)
    assert decision.promote, decision.reasons  # the first model on this server
    record_decision(MlflowClient(), NAME, version, decision)
    return version


@pytest.fixture
def registered(mlflow_on_s3: str, trained_project: Path, tmp_path: Path) -> Iterator[str]:
    import mlflow

    try:
        yield register_through(mlflow_on_s3, trained_project, tmp_path)
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


def test_mlflow_keeps_the_champion_in_the_bucket_and_build_imports_it(
    registered: str, mlflow_on_s3: str, object_store: Any, trained_project: Path, tmp_path: Path
):
    stored = _keys(object_store, "mlflow/")
    models = [k for k in stored if k.endswith("/artifacts/MLmodel")]
    assert len(models) == 1, sorted(stored)
    booster_key = models[0].replace("/MLmodel", "/model.lgb")
    assert stored.get(booster_key, 0) > 0
    assert any(k.endswith(f"/artifacts/{SERVING_ARTIFACTS}/data_contract.json") for k in stored)

    # `make build`'s import, as a client that knows the MLflow URL and no bucket key
    home = tmp_path / "bentoml"
    env = _env(None, MLFLOW_TRACKING_URI=mlflow_on_s3, BENTOML_HOME=str(home))
    build = [*CLI, "build", "--no-build", "--project", str(trained_project)]
    _run(build, trained_project, env)
    (imported,) = (home / "models" / NAME).glob("*/model.yaml")
    bento_model = imported.parent
    spec = json.loads((bento_model / SPEC_FILE).read_text())
    assert spec["model_version"] == registered
    assert spec["lineage"]["mlflow_run_id"] != "unknown"
    booster_file = bento_model / MODEL_DIR / "model.lgb"
    body = object_store.client().get_object(Bucket=object_store.bucket, Key=booster_key)["Body"]
    assert booster_file.read_bytes() == body.read()

    # the model that came back from the bucket scores as the trained project's champion
    import mlflow

    from credit_scoring.training.registry import load_model

    mlflow.set_tracking_uri(f"sqlite:///{trained_project / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{trained_project / 'mlflow.db'}")
    try:
        champion = load_model(f"models:/{NAME}@champion")
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    rows = pd.read_parquet(trained_project / "data/03_primary/applications_primary.parquet")
    rows = rows.head(200)
    served = lgb.Booster(model_file=str(booster_file)).predict(champion.model_input(rows))
    np.testing.assert_allclose(served, champion.predict_proba(rows), atol=1e-12)
