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
