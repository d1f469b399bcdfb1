"""The Spark engine's session: spark.yml checked before a JVM starts, then one real session."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.config.spark import spark_settings
from credit_scoring.core.errors import ContractError
from credit_scoring.devtools.processes import free_port
from credit_scoring.engines.spark import (
    SparkUnavailable,
    check_java,
    java_major,
    start_session,
)
from tests.conftest import require_binary, run_python

# --- spark.yml: Spark's own names, checked without a JVM -------------------------------------


def test_settings_keep_sparks_names_as_strings_and_default_to_local() -> None:
    settings = spark_settings({"spark.sql.shuffle.partitions": 4, "spark.ui.enabled": False})
    assert settings == {
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.enabled": "false",
        "spark.master": "local[*]",
    }


@pytest.mark.parametrize(
    "master",
    [
        "local",
        "local[2]",
        "local[*]",
        "local[4,2]",
        "spark://10.0.0.5:7077",
        "spark://a.example:7077,b.example:7077",
        "yarn",
        "k8s://https://api.example:6443",
    ],
)
def test_the_masters_spark_accepts_pass(master: str) -> None:
    assert spark_settings({"spark.master": master})["spark.master"] == master


@pytest.mark.parametrize(
    "master",
    ["locall[2]", "local[0]", "spark://host", "mesos://m:5050", "local[*] ", "yarn-client"],
)
def test_a_wrong_master_names_the_setting_and_the_forms(master: str) -> None:
    with pytest.raises(ContractError, match=r"spark\.master = .* use local, local\[N\]"):
        spark_settings({"spark.master": master})


def test_a_key_that_is_not_a_spark_setting_is_refused() -> None:
    with pytest.raises(
        ContractError, match=r"`master` is not a Spark setting.*starts with `spark\.`"
    ):
        spark_settings({"master": "local[2]"})


def test_a_nested_value_is_refused() -> None:
    with pytest.raises(ContractError, match=r"`spark\.executor` must be one value"):
        spark_settings({"spark.executor": {"memory": "2g"}})


def test_the_spark_environment_file_is_valid() -> None:
    from credit_scoring.config.loader import config_loader

    settings = spark_settings(config_loader(env="spark")["spark"])
    assert settings["spark.master"] == "local[*]"
    assert settings["spark.ui.enabled"] == "false"  # no web UI listening on a shared machine


# --- no Java, an old Java, a silent master: an error in seconds, with the fix ---------------


def test_no_java_fails_at_once_with_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SparkUnavailable, match=r"no `java` on PATH.*openjdk-17-jre-headless"):
        check_java()


def test_a_java_home_without_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkUnavailable, match=f"JAVA_HOME={tmp_path} holds no bin/java"):
        check_java()


def test_an_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_392\"' >&2\n")
    java.chmod(0o755)
    assert java_major(java) == 8
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(SparkUnavailable, match="is Java 8; Spark 4 needs 17"):
        check_java()


def test_the_machines_java_is_recent_enough() -> None:
    from pathlib import Path as P

    java = require_binary("java")
    assert java_major(P(java)) >= 17


def test_a_master_nobody_listens_on_fails_in_seconds() -> None:
    require_binary("java")
    master = f"spark://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(SparkUnavailable, match=f"spark.master = {master}: no Spark master"):
        start_session(spark_settings({"spark.master": master}))
    assert time.monotonic() - started < 10


# --- the real session ---------------------------------------------------------------------


def test_the_session_runs_python_workers_of_this_environment(spark: Any) -> None:
    """Arrow, mapInPandas and the project's interpreter on the workers: what the Spark
    pipelines' row transformers (pseudonymisation, scoring) rely on."""
    assert spark.conf.get("spark.sql.shuffle.partitions") == "8"  # from conf/spark/spark.yml
    assert spark.range(1000).selectExpr("sum(id)").first()[0] == 499_500

    def where(batches: Any) -> Any:
        import sys as worker_sys

        for batch in batches:
            yield batch.assign(executable=worker_sys.executable)

    frame = spark.createDataFrame(pd.DataFrame({"id": [1, 2, 3]}))
    rows = frame.mapInPandas(where, "id long, executable string").toPandas()
    assert rows["id"].tolist() == [1, 2, 3]
    assert set(rows["executable"]) == {sys.executable}


KEDRO_CONTEXT = """
import json, sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

project = Path(sys.argv[1])
bootstrap_project(project)
with KedroSession.create(project_path=project, env=sys.argv[2] or None) as session:
    session.load_context()
from pyspark.sql import SparkSession  # mlflow imports pyspark when installed: no JVM yet

spark = SparkSession.getActiveSession()
print(json.dumps({
    "session": spark is not None,
    "partitions": spark.conf.get("spark.sql.shuffle.partitions") if spark else None,
}))
"""


def _context_of(env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return run_python(KEDRO_CONTEXT, str(PROJECT_ROOT), env, cwd=PROJECT_ROOT, env=environ)


@pytest.mark.integration
def test_the_spark_environment_starts_the_session_and_base_starts_no_jvm() -> None:
    require_binary("java")
    assert _context_of("spark") == {"session": True, "partitions": "8"}
    assert _context_of("") == {"session": False, "partitions": None}  # pandas: no JVM
