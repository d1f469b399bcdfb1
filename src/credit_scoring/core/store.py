"""Prediction events and the client feature store, in one SQLAlchemy database.

SQLite by default, PostgreSQL in production: one URL (``CREDIT_SCORING_DATABASE_URL``).
Events are written by a background thread in groups, so a request only appends to a queue;
``close()`` (called on a clean shutdown) writes everything still queued before returning,
and events that cannot be written are kept in a spill file rather than dropped.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "CREDIT_SCORING_DATABASE_URL"
# The project's own database when no URL is given: this file under the project folder.
DEFAULT_DATABASE_PATH = "data/09_serving/serving.db"
EVENTS_TABLE = "prediction_events"
_CHUNK = 32  # rows per executemany: a short hold of the GIL
CLIENT_FEATURES_TABLE = "client_features"

metadata = sa.MetaData()
events_table = sa.Table(
    EVENTS_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_time", sa.DateTime(), nullable=False, index=True, comment="UTC"),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("client_id", sa.String(128), nullable=True, index=True, comment="pseudonym"),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("features", sa.JSON(), nullable=False),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=False),
)


def database_url(project_dir: str | Path, environ: dict[str, str] | None = None) -> str:
    """``CREDIT_SCORING_DATABASE_URL``, else the project's SQLite file (an absolute path).

    Resolved once, from the project folder: a relative SQLite URL would follow the working
    directory of whatever process opens it (the bento's folder, for ``bentoml serve``).
    """
    env = os.environ if environ is None else environ
    url = env.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{(Path(project_dir) / DEFAULT_DATABASE_PATH).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:///") or url.startswith("sqlite:///:memory:"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def unsent_dir(url: str) -> Path:
    """Where events that cannot be written are kept: beside a SQLite file, else a temp folder."""
    path = sqlite_path(url)
    if path is not None:
        return path.parent / "unsent"
    return Path(tempfile.gettempdir()) / "credit_scoring" / "unsent"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout (several workers write)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, json_serializer=_json, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def create_schema(engine: Engine) -> None:
    metadata.create_all(engine, tables=[events_table], checkfirst=True)


class EventStore:
    """Append prediction events; a background thread writes them in groups.

    The writer wakes up every ``flush_seconds`` (or when closed) and drains the queue: a
    request only appends to it, with no thread wake-up per event.
    """

    def __init__(
        self,
        url: str,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        spill_dir: str | Path | None = None,
    ) -> None:
        self.engine = make_engine(url)
        create_schema(self.engine)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.spill_dir = Path(spill_dir) if spill_dir else unsent_dir(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def record(self, event: dict[str, Any]) -> None:
        row = self._row(event)  # a flat tuple of scalars: nothing for the GC to track
        with self._lock:  # never accepted after close() has taken the last events
            if self._closed:
                raise RuntimeError("the event store is closed")
            self._queue.put(row)

    def record_many(self, events: Iterable[dict[str, Any]]) -> None:
        rows = [self._row(e) for e in events]
        with self._lock:
            if self._closed:
                raise RuntimeError("the event store is closed")
            for row in rows:
                self._queue.put(row)

    def _row(self, e: dict[str, Any]) -> tuple[Any, ...]:
        return (
            e["event_time"].isoformat(sep=" ", timespec="microseconds")
            if self._sqlite
            else e["event_time"],
            e["request_id"],
            e["endpoint"],
            e["client_id"],
            e["model_name"],
            e["model_version"],
            _json(e["features"]),
            float(e["probability"]),
            e["decision"],
            float(e["threshold"]),
        )

    def close(self, timeout: float = 30.0) -> None:
        """Write every queued event, then stop. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        self.engine.dispose()

    def _drain(self) -> list[tuple[Any, ...]]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _run(self) -> None:
        unsent: list[tuple[Any, ...]] = []
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            pending = unsent + self._drain()
            unsent = []
            for start in range(0, len(pending), self.batch_size):
                unsent += self._write(pending[start : start + self.batch_size], final=stopping)
            if stopping:
                return

    def _write(self, events: list[tuple[Any, ...]], final: bool) -> list[tuple[Any, ...]]:
        for attempt in range(3 if final else 1):
            try:
                self._insert(events)
                self.written += len(events)
                return []
            except Exception:  # the database may be down: keep the events
                logger.exception("Writing %d prediction event(s) failed", len(events))
                time.sleep(0.2 * (attempt + 1))
        if final or len(events) > 100 * self.batch_size:
            self._spill(events)
            return []
        return events  # retried with the next group

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Plain executemany on the driver, in small chunks, in one transaction.

        The writer shares the GIL with the API's event loop, and a thread that wants the GIL
        waits up to ``sys.getswitchinterval()`` (5 ms) for a busy one to let go: so the
        writer never holds it for long (rows are ready-made tuples, sent a chunk at a time)
        and lets go between chunks.
        """
        with self.engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                conn.exec_driver_sql(self._insert_sql, rows[start : start + _CHUNK])
                time.sleep(0)  # let the event loop have the GIL now, not in 5 ms

    @property
    def _insert_sql(self) -> str:
        columns = [c.name for c in events_table.columns if c.name != "id"]
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (
            f"INSERT INTO {EVENTS_TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join([marker] * len(columns))})"
        )

    def _spill(self, rows: list[tuple[Any, ...]]) -> None:
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"events-{os.getpid()}-{time.time_ns()}.jsonl"
        columns = [str(c.name) for c in events_table.columns if c.name != "id"]
        with path.open("wb") as handle:
            for row in rows:
                event = dict(zip(columns, row, strict=True))
                event["features"] = orjson.loads(event["features"])
                handle.write(orjson.dumps(event, default=str) + b"\n")
        logger.error("Kept %d unsent prediction event(s) in %s", len(rows), path)


def read_events(url: str, limit: int | None = None) -> pd.DataFrame:
    engine = make_engine(url)
    try:
        query = sa.select(events_table).order_by(events_table.c.id)
        if limit:
            query = query.limit(limit)
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all())
    finally:
        engine.dispose()


def purge_events(url: str, older_than_days: int, now: datetime | None = None) -> int:
    """Delete events older than the retention period; returns how many were deleted."""
    if older_than_days < 1:
        raise ValueError(f"retention_days must be at least 1 (got {older_than_days})")
    cutoff = (now or datetime.now(UTC)).replace(tzinfo=None) - timedelta(days=older_than_days)
    engine = make_engine(url)
    try:
        create_schema(engine)
        with engine.begin() as conn:
            result = conn.execute(events_table.delete().where(events_table.c.event_time < cutoff))
        return int(result.rowcount or 0)
    finally:
        engine.dispose()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- client feature store ---------------------------------------------------------------


def replace_client_features(url: str, frame: pd.DataFrame, id_column: str) -> int:
    """Replace the client feature table in one transaction (readers never see it half-done)."""
    if frame[id_column].isna().any() or frame[id_column].duplicated().any():
        raise ValueError(f"client features need one row per non-empty '{id_column}'")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            frame.to_sql(CLIENT_FEATURES_TABLE, conn, if_exists="replace", index=False)
            conn.execute(
                sa.text(
                    f'CREATE UNIQUE INDEX "ix_{CLIENT_FEATURES_TABLE}_{id_column}" '
                    f'ON "{CLIENT_FEATURES_TABLE}" ("{id_column}")'
                )
            )
        return len(frame)
    finally:
        engine.dispose()


class ClientFeatureStore:
    """Read the features of one known client by pseudonymised id."""

    def __init__(self, url: str, id_column: str) -> None:
        self.engine = make_engine(url)
        self.id_column = id_column
        self._query = sa.text(
            f'SELECT * FROM "{CLIENT_FEATURES_TABLE}" WHERE "{id_column}" = :client_id'
        )

    def available(self) -> bool:
        return sa.inspect(self.engine).has_table(CLIENT_FEATURES_TABLE)

    def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's stored features, or None for an unknown id (or an empty store)."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(self._query, {"client_id": client_id}).mappings().first()
        except sa.exc.DBAPIError:
            if self.available():
                raise
            logger.warning("The client feature store is empty: run the data_processing pipeline")
            return None
        if row is None:
            return None
        return {k: v for k, v in row.items() if k != self.id_column}

    def close(self) -> None:
        self.engine.dispose()
