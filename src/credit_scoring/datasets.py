"""Project datasets beyond kedro-datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset
from kedro_datasets.pandas import CSVDataset


class OptionalCSVDataset(CSVDataset):
    """A CSV file that may be absent (loads as None): e.g. the synthetic data's ground truth."""

    def load(self) -> pd.DataFrame | None:
        if not Path(self._filepath).exists():
            return None
        return super().load()


def _spark_chunks(frame: Any, rows: int = 50_000) -> Any:
    """A Spark table as pandas chunks, one partition at a time on the driver."""
    buffer: list[Any] = []
    for row in frame.toLocalIterator(prefetchPartitions=True):
        buffer.append(row)
        if len(buffer) == rows:
            yield pd.DataFrame.from_records(buffer, columns=frame.columns)
            buffer = []
    if buffer:
        yield pd.DataFrame.from_records(buffer, columns=frame.columns)


class ClientFeatureStoreDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """The client feature store: one row per known client, read by the scoring API.

    Saving replaces the whole table in one transaction (SQLite or PostgreSQL, by URL), so
    the API never reads a half-written store. The first column is the (pseudonymised) id.
    """

    def __init__(self, url: str, metadata: dict[str, Any] | None = None) -> None:
        self._url = url
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        from credit_scoring.storage.clients import CLIENT_FEATURES_TABLE
        from credit_scoring.storage.database import make_engine

        engine = make_engine(self._url)
        try:
            with engine.connect() as conn:
                return pd.read_sql_table(CLIENT_FEATURES_TABLE, conn)
        finally:
            engine.dispose()

    def save(self, data: pd.DataFrame) -> None:
        from credit_scoring.storage.clients import replace_client_features

        chunks: Any = data
        if not isinstance(data, pd.DataFrame):  # a Spark table: streamed, chunk by chunk
            id_column = data.columns[0]
            if data.count() != data.select(id_column).dropna().distinct().count():
                raise ValueError(f"client features need one row per non-empty '{id_column}'")
            chunks = _spark_chunks(data)
        replace_client_features(self._url, chunks, id_column=str(data.columns[0]))

    def _describe(self) -> dict[str, Any]:
        return {"url": self._url.split("@")[-1]}  # never log credentials


class DatabaseURLDataset(AbstractDataset[str, str]):
    """A database's SQLAlchemy URL, for nodes that query it themselves (e.g. a window of
    prediction events). Read-only; its description never shows credentials."""

    def __init__(self, url: str, metadata: dict[str, Any] | None = None) -> None:
        self._url = url
        self.metadata = metadata

    def load(self) -> str:
        return self._url

    def save(self, data: str) -> None:
        raise NotImplementedError("the database URL is configuration, not a pipeline output")

    def _describe(self) -> dict[str, Any]:
        return {"url": self._url.split("@")[-1]}


class TableDataset(AbstractDataset[Any, Any]):
    """A table of the project's database, read whole: pandas by default, or a Spark
    DataFrame (``engine: spark``, made from the pandas read through Arrow: the Spark wheel has
    no JDBC driver for SQLite; a cluster reading PostgreSQL or Parquet points the catalog
    entry at ``spark.SparkDataset`` instead). Read-only; never shows credentials."""

    def __init__(
        self,
        url: str,
        table: str,
        engine: str = "pandas",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if engine not in ("pandas", "spark"):
            raise ValueError(f"engine: 'pandas' or 'spark', not {engine!r}")
        self._url = url
        self._table = table
        self._engine = engine
        self.metadata = metadata

    def load(self) -> Any:
        from credit_scoring.storage.database import make_engine

        engine = make_engine(self._url)
        try:
            with engine.connect() as conn:
                frame = pd.read_sql_table(self._table, conn)
        finally:
            engine.dispose()
        # plain str names (SQLAlchemy gives its own str subclass, which JSON encoders refuse)
        frame.columns = [str.__str__(c) for c in frame.columns]
        if self._engine == "pandas":
            return frame
        from pyspark.sql import SparkSession

        return SparkSession.builder.getOrCreate().createDataFrame(frame)

    def save(self, data: Any) -> None:
        raise NotImplementedError(f"{self._table} is read here, not written")

    def _describe(self) -> dict[str, Any]:
        return {"url": self._url.split("@")[-1], "table": self._table, "engine": self._engine}


class ChampionScorerDataset(AbstractDataset[Any, Any]):
    """The registry's model of an alias (``models:/<model_name>@champion``) as a ``Scorer``:
    the scoring code, threshold, features and declarations the API serves it with (the same
    spec ``make build`` packages). Read-only: the registry gate moves the alias."""

    def __init__(
        self, model_name: str, alias: str = "champion", metadata: dict[str, Any] | None = None
    ) -> None:
        self._model_name = model_name
        self._alias = alias
        self.metadata = metadata

    def load(self) -> Any:
        import tempfile

        from credit_scoring.serving.scorer import Scorer
        from credit_scoring.training.champion import download_champion

        # the scorer reads its model files once, when it is made: the folder can go after
        with tempfile.TemporaryDirectory(prefix="champion-") as folder:
            spec = download_champion(self._model_name, self._alias, Path(folder))
            return Scorer(spec, Path(folder))

    def save(self, data: Any) -> None:
        raise NotImplementedError("models are registered by the data_science pipeline")

    def _describe(self) -> dict[str, Any]:
        return {"model": f"models:/{self._model_name}@{self._alias}"}


class AtomicParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """A Parquet file replaced atomically: written beside the target, then renamed over it,
    so a failed run leaves the previous file (never half a file) as the current output."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        return pd.read_parquet(self._filepath)

    def save(self, data: pd.DataFrame) -> None:
        import os

        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        partial = self._filepath.with_name(f".{self._filepath.name}.{os.getpid()}.partial")
        try:
            data.to_parquet(partial, index=False)
            os.replace(partial, self._filepath)
        finally:
            partial.unlink(missing_ok=True)

    def _exists(self) -> bool:
        return self._filepath.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class BatchScoresTableDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """The ``batch_scores`` table: saving replaces the run's rows in one transaction."""

    def __init__(self, url: str, metadata: dict[str, Any] | None = None) -> None:
        self._url = url
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        from credit_scoring.storage.batch import read_batch_scores

        return read_batch_scores(self._url)

    def save(self, data: pd.DataFrame) -> None:
        from credit_scoring.storage.batch import replace_batch_scores

        replace_batch_scores(self._url, data)

    def _describe(self) -> dict[str, Any]:
        return {"url": self._url.split("@")[-1]}


class BatchEventsDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Batch prediction events into the events table, one transaction, none twice."""

    def __init__(self, url: str, metadata: dict[str, Any] | None = None) -> None:
        self._url = url
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        from credit_scoring.storage.events import read_events

        events = read_events(self._url)
        return events[events["source"] == "batch"] if "source" in events else events

    def save(self, data: pd.DataFrame) -> None:
        from credit_scoring.storage.batch import record_batch_events

        record_batch_events(self._url, data)

    def _describe(self) -> dict[str, Any]:
        return {"url": self._url.split("@")[-1]}
