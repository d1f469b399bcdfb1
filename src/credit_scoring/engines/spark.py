"""The SparkSession of the Spark engine, built from ``conf/<env>/spark.yml``.

Made once per process by the project hook when the running environment has a ``spark.yml``
(``kedro run --env spark``); ``conf/base`` has none, so a pandas run starts no JVM.
Before a JVM is started, what would otherwise fail slowly or obscurely fails in the first
seconds with the setting and the fix: no Java 17, a ``spark.master`` nobody listens on.
With ``SPARK_REMOTE`` set (Spark Connect: Databricks, a Spark Connect server) no local JVM
runs and the master is the server's.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from credit_scoring.core.errors import ContractError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

JAVA_MAJOR = 17  # Spark 4 runs on Java 17 or 21
INSTALL_JAVA = (
    "install Java 17 (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME to one; "
    "or run the pandas engine (`kedro run` without `--env spark`)"
)


class SparkUnavailable(ContractError):
    """Spark cannot start here; the message names the setting and the fix."""


def java_binary() -> Path:
    """The ``java`` Spark will launch: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if not candidate.exists():
            raise SparkUnavailable(f"JAVA_HOME={home} holds no bin/java: {INSTALL_JAVA}")
        return candidate
    found = shutil.which("java")
    if found is None:
        raise SparkUnavailable(f"Spark needs Java {JAVA_MAJOR}: no `java` on PATH: {INSTALL_JAVA}")
    return Path(found)


def java_major(java: Path) -> int:
    """The major version ``java -version`` reports (``17.0.15`` -> 17, ``1.8.0`` -> 8)."""
    out = subprocess.run(
        [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
    )
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if found is None:
        raise SparkUnavailable(f"`{java} -version` printed no version: {INSTALL_JAVA}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def check_java() -> None:
    java = java_binary()
    major = java_major(java)
    if major < JAVA_MAJOR:
        raise SparkUnavailable(
            f"{java} is Java {major}; Spark 4 needs {JAVA_MAJOR}+: {INSTALL_JAVA}"
        )


def check_master_reachable(master: str, timeout: float = 5.0) -> None:
    """A standalone master (``spark://``) that does not answer fails now, not after Spark's
    retries; ``local`` needs nothing, and YARN or Kubernetes are reached by their clients."""
    if not master.startswith("spark://"):
        return
    for address in master.removeprefix("spark://").split(","):
        parts = urlsplit(f"//{address}")
        try:
            with socket.create_connection((parts.hostname or "", parts.port or 7077), timeout):
                return  # one live master of the list is enough (high availability)
        except OSError:
            continue
    raise SparkUnavailable(
        f"spark.master = {master}: no Spark master answers there; start the cluster or set "
        "spark.master in conf/<env>/spark.yml (local[*] runs Spark in this process)"
    )


def start_session(settings: dict[str, str]) -> SparkSession:
    """The process's SparkSession with ``settings`` (from ``config.spark.spark_settings``).

    The Python workers run this interpreter (``PYSPARK_PYTHON``), so they import the same
    project and libraries as the driver.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    if os.environ.get("SPARK_REMOTE"):  # Spark Connect: the server has the master
        settings = {k: v for k, v in settings.items() if k != "spark.master"}
    else:
        check_java()
        check_master_reachable(settings["spark.master"])
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def active_session(user: str) -> SparkSession:
    """The session the project hook started; ``user`` (who needs it) is named if there is none."""
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    if session is None:
        raise SparkUnavailable(
            f"{user} runs on Spark, but no Spark session is running: run it in the Spark "
            "environment (`kedro run --env spark`, whose conf/spark/spark.yml starts the "
            "session), or declare it in conf/spark/ rather than conf/base/"
        )
    return session


def task_slots(session: SparkSession) -> int:
    """How many tasks the session runs at once: its executors' cores / ``spark.task.cpus``
    (``local[2]``: 2). Executors that have not registered yet are not counted."""
    context = session.sparkContext
    try:
        jvm_context = context._jsc.sc()  # what xgboost.spark itself counts
        profile = jvm_context.resourceProfileManager().resourceProfileFromId(0)
        return int(jvm_context.maxNumConcurrentTasks(profile))
    except Exception:  # no JVM handle (Spark Connect): Spark's own default parallelism
        cpus = int(context.getConf().get("spark.task.cpus", "1"))
        return max(int(context.defaultParallelism) // cpus, 1)
