"""``conf/<env>/spark.yml``: the SparkSession of the Spark engine (``kedro run --env spark``).

The file holds Spark's own settings under Spark's own names (``spark.master``,
``spark.driver.memory``, ``spark.sql.shuffle.partitions``, ...), as every Spark operator knows
them and as a managed cluster's documentation gives them. They are checked here, before a JVM
starts, so a typo fails in the first second with the key and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from credit_scoring.core.errors import ContractError

SPARK_DOCS = "https://spark.apache.org/docs/latest/configuration.html"
MASTER_FORMS = "local, local[N], local[*], spark://HOST:PORT, yarn or k8s://https://HOST:PORT"
_MASTER = re.compile(
    r"local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?"  # local, local[4], local[*], local[4,2] (retries)
    r"|spark://[\w.\-]+:\d+(,[\w.\-]+:\d+)*"  # a standalone cluster (several masters: HA)
    r"|yarn"
    r"|k8s://(https?://)?[\w.\-]+(:\d+)?"
)
DEFAULT_MASTER = "local[*]"


def spark_settings(raw: Mapping[str, Any], source: str = "spark.yml") -> dict[str, str]:
    """Spark's settings from ``spark.yml``, as strings (what ``SparkConf`` takes).

    Raises ``ContractError`` naming the key and the fix: a key that is not a Spark setting, a
    nested value, a ``spark.master`` Spark would not accept.
    """
    settings: dict[str, str] = {}
    for key, value in raw.items():
        if not str(key).startswith("spark."):
            raise ContractError(
                f"{source}: `{key}` is not a Spark setting: every key starts with `spark.` "
                f"(Spark's own names, {SPARK_DOCS})"
            )
        if isinstance(value, Mapping | list) or value is None:
            raise ContractError(
                f"{source}: `{key}` must be one value (a string, a number or true/false), "
                f"got {type(value).__name__}: write it as Spark's property value"
            )
        settings[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    master = settings.setdefault("spark.master", DEFAULT_MASTER)
    if not _MASTER.fullmatch(master):
        raise ContractError(
            f"{source}: spark.master = {master!r} is not a master URL Spark accepts: use "
            f"{MASTER_FORMS}; for Spark Connect leave it out and set SPARK_REMOTE"
        )
    return settings
