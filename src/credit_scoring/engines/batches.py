"""Run one pandas function over a table, whatever engine holds it.

The row-local steps that need Python (the keyed HMAC, pandera's validation, a fitted
scikit-learn imputer, the champion's scorer) are written once as ``pandas -> pandas``
functions. On pandas the function gets the whole table; on Spark it runs in the executors on
Arrow batches (``mapInPandas``), so the same code gives the same rows on both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import narwhals as nw
import pandas as pd

from credit_scoring.core.frames import ROW_ORDER, is_eager, lazy

BatchFunction = Callable[[pd.DataFrame], pd.DataFrame]

# Spark SQL types by the names this project's schemas use.
SPARK_TYPES = {
    "float": "double",
    "int": "bigint",
    "category": "string",
    "str": "string",
    "bool": "boolean",
    "int8": "tinyint",
}


def is_spark(native: Any) -> bool:
    return not is_eager(lazy(native))


def spark_schema(fields: dict[str, str]) -> str:
    """A Spark DDL schema (``a double, b string``) from ``{column: project type}``."""
    return ", ".join(f"`{name}` {SPARK_TYPES.get(kind, kind)}" for name, kind in fields.items())


def map_batches(
    native: Any,
    function: BatchFunction,
    added: dict[str, str] | None = None,
    schema: dict[str, str] | str | None = None,
    batch_rows: int | None = None,
    partitions: int | None = None,
) -> Any:
    """``function`` applied to ``native`` (pandas: once; Spark: per batch, in the executors).

    Spark needs the output's schema before it runs: either the input's columns plus
    ``added`` (``{column: type}``), or a whole ``schema`` (that mapping, or Spark DDL).
    ``batch_rows`` bounds each Arrow batch; ``partitions`` splits the table into that many
    tasks first.
    """
    if not is_spark(native):
        return function(native)
    if batch_rows is not None:
        native.sparkSession.conf.set(
            "spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows)
        )
    if partitions is not None:
        native = native.repartition(partitions)
    if isinstance(schema, str):
        ddl = schema
    elif schema is not None:
        ddl = spark_schema(schema)
    else:
        current = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in native.schema)
        ddl = ", ".join(part for part in (current, spark_schema(added or {})) if part)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            yield function(batch)

    return native.mapInPandas(run, schema=ddl)


def with_row_order(native: Any) -> Any:
    """The table with a ``_row`` column that increases in the source's row order.

    pandas: the row's position. Spark: ``monotonically_increasing_id`` where the table is read
    (it increases along a file's splits, in order); kept by every step after ingestion.
    """
    frame = lazy(native)
    if ROW_ORDER in frame.collect_schema().names():
        return frame
    if not is_spark(native):
        return nw.from_native(native).with_row_index(ROW_ORDER).lazy()
    from pyspark.sql import functions as F

    return lazy(native.withColumn(ROW_ORDER, F.monotonically_increasing_id()))
