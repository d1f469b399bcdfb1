"""Prediction events and the client feature store, in one SQLAlchemy database.

SQLite by default, PostgreSQL in production: one URL (``CREDIT_SCORING_DATABASE_URL``).

Events survive the death of the process that answered them. A request appends its event as
one line to the worker's journal file (one ``write``, no fsync: once it returns, the line is
in the operating system's page cache and outlives the process) before the response is sent.
A background thread ships the journal to the database in groups and records how far it got
in a checkpoint file. A journal whose owner died (``kill -9``, out-of-memory kill) is taken
over by the next store that starts on the same folder, or by a live sibling within
``adopt_seconds``, and shipped from its checkpoint. Every event carries a unique
``event_id`` and is inserted with ``ON CONFLICT DO NOTHING``, so shipping a group twice (a
crash between the commit and the checkpoint) stores it once.

Covered: the crash of a worker process, a restart, a database that is down for a while
(the journal keeps growing and is shipped when it is back). Not covered: the loss of the
machine or of its disk before the journal is shipped (the page cache is not flushed to disk
by each request); put the journal folder on a volume that outlives the container.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
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
JOURNAL_GLOB = "events-*.jsonl"
_READ_BYTES = 4 << 20  # journal read per step when shipping

metadata = sa.MetaData()
events_table = sa.Table(
    EVENTS_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(32), nullable=True, comment="idempotency key"),
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
    sa.Index(f"uq_{EVENTS_TABLE}_event_id", "event_id", unique=True),
)
# the order of a journal line (a JSON array) and of the INSERT's parameters
ROW_COLUMNS = [c.name for c in events_table.columns if c.name != "id"]
_TIME = ROW_COLUMNS.index("event_time")


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


def journal_dir(url: str) -> Path:
    """Where the event journals of a database live: beside a SQLite file, else a temp folder.

    For another database the folder is named after a hash of the URL, so that services
    writing to different databases never ship each other's journals.
    """
    path = sqlite_path(url)
    if path is not None:
        return path.parent / "journal"
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "credit_scoring" / "journal" / digest


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout (several workers write)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error message must not carry an event (a pseudonym) into the logs
    engine = sa.create_engine(
        url, json_serializer=_json, pool_pre_ping=True, hide_parameters=True
    )
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
    """Create the events table, or add ``event_id`` to one made before it existed.

    Every process runs this before its first insert (several workers may race here): the
    unique index that ``ON CONFLICT`` needs exists before anything is written.
    """
    metadata.create_all(engine, tables=[events_table], checkfirst=True)
    columns = {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}
    if "event_id" not in columns:
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN event_id VARCHAR(32)"))
        except sa.exc.DBAPIError:  # another worker added it first
            columns = {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}
            if "event_id" not in columns:
                raise
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE UNIQUE INDEX IF NOT EXISTS uq_{EVENTS_TABLE}_event_id "
                f"ON {EVENTS_TABLE} (event_id)"
            )
        )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Journal:
    """One append-only file of events, locked by the process that owns or ships it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.offset_path = path.with_suffix(".offset")

    @classmethod
    def create(cls, folder: Path) -> Journal:
        """A new journal, locked before it gets a name that others look for."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events-{os.getpid()}-{time.time_ns()}"
        hidden = folder / f".{name}.tmp"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = folder / f"{name}.jsonl"
        os.rename(hidden, path)
        return cls(path, fd)

    @classmethod
    def adopt(cls, path: Path) -> Journal | None:
        """Lock the journal of a process that is gone; None if its owner still holds it."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if os.fstat(fd).st_nlink == 0:  # shipped and removed by another process meanwhile
            os.close(fd)
            return None
        return cls(path, fd)

    def append(self, data: bytes) -> None:
        _write_all(self.fd, data)

    def shipped(self) -> int:
        try:
            return int(self.offset_path.read_text() or 0)
        except FileNotFoundError:
            return 0

    def set_shipped(self, offset: int) -> None:
        tmp = self.offset_path.with_suffix(".offset.tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)

    def read_from(self, offset: int, limit: int) -> bytes:
        return os.pread(self.fd, limit, offset) if limit > 0 else b""

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def remove(self) -> None:
        """Delete the journal and its checkpoint (everything in it is in the database)."""
        self.offset_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


class EventStore:
    """Append prediction events to a journal; a background thread ships it to the database.

    ``record`` returns once the event is in the journal (in the OS page cache); the writer
    wakes up every ``flush_seconds`` (or when closed) and ships what is new, in groups of
    ``batch_size`` rows, one transaction and one checkpoint per group.
    """

    def __init__(
        self,
        url: str,
        batch_size: int = 500,
        flush_seconds: float = 0.2,
        journal: str | Path | None = None,
        adopt_seconds: float = 5.0,
        rotate_bytes: int = 64 << 20,
    ) -> None:
        self.engine = make_engine(url)
        create_schema(self.engine)
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.adopt_seconds = adopt_seconds
        self.rotate_bytes = rotate_bytes
        self.journal_dir = Path(journal) if journal else journal_dir(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self.written = 0  # events this store inserted (adopted ones included)
        self._journal = Journal.create(self.journal_dir)
        self._insert_sql = self._make_insert_sql()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    # --- request path -----------------------------------------------------------------

    def record(self, event: dict[str, Any]) -> None:
        """Journal one event; when this returns, the event survives the process."""
        self._append(orjson.dumps(self._row(event)) + b"\n")

    def record_many(self, events: Iterable[dict[str, Any]]) -> None:
        self._append(b"".join(orjson.dumps(self._row(e)) + b"\n" for e in events))

    def _append(self, data: bytes) -> None:
        with self._lock:  # never accepted after close() has taken the last events
            if self._closed:
                raise RuntimeError("the event store is closed")
            self._journal.append(data)

    @staticmethod
    def _row(e: dict[str, Any]) -> tuple[Any, ...]:
        return (
            uuid.uuid4().hex,
            e["event_time"].isoformat(sep=" ", timespec="microseconds"),
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

    # --- shutdown ---------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Ship every journaled event, then stop. Safe to call twice.

        If the database cannot take them, the journal stays on disk and the next store
        started on the same folder ships it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        self.engine.dispose()

    # --- writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_adoption = 0.0
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            if time.monotonic() >= next_adoption or stopping:
                self._adopt_orphans()
                next_adoption = time.monotonic() + self.adopt_seconds
            try:
                done = self._ship(self._journal)
            except Exception:  # the database may be down: the journal keeps the events
                logger.exception("Shipping prediction events failed; will retry")
                done = False
            if stopping:
                if done:
                    self._journal.remove()
                else:
                    logger.error(
                        "Prediction events not yet in the database are kept in %s; the next "
                        "start of the service ships them",
                        self._journal.path,
                    )
                    self._journal.close()
                return
            if done and self._journal.size() >= self.rotate_bytes:
                self._rotate()

    def _rotate(self) -> None:
        with self._lock:
            old, self._journal = self._journal, Journal.create(self.journal_dir)
        try:
            self._ship(old)  # anything appended between the last ship and the swap
        except Exception:
            logger.exception("Shipping %s failed; it will be taken over", old.path.name)
            old.close()  # unlocked: shipped later like the journal of a stopped worker
            return
        old.remove()

    def _adopt_orphans(self) -> None:
        for path in sorted(self.journal_dir.glob(JOURNAL_GLOB)):
            if path == self._journal.path:
                continue
            orphan = Journal.adopt(path)
            if orphan is None:
                continue
            try:
                before = self.written
                if self._ship(orphan, complete=True):
                    logger.info(
                        "Shipped %d prediction event(s) left by a stopped worker (%s)",
                        self.written - before,
                        path.name,
                    )
                    orphan.remove()
                    continue
            except Exception:
                logger.exception("Shipping the events of %s failed; will retry", path.name)
            orphan.close()

    def _ship(self, journal: Journal, complete: bool = False) -> bool:
        """Insert what the journal holds past its checkpoint; True when all is shipped.

        A live journal may end in a line still being written: only whole lines are shipped.
        A ``complete`` journal (its owner is gone) may end in a line whose write never
        finished; that request was never answered, and the line is dropped.
        """
        offset = journal.shipped()
        size = journal.size()
        while offset < size:
            data = journal.read_from(offset, min(size - offset, _READ_BYTES))
            end = data.rfind(b"\n") + 1
            if end == 0:  # no whole line left
                if offset + len(data) < size:
                    raise ValueError(f"a line longer than {_READ_BYTES} bytes in {journal.path}")
                if complete:
                    logger.warning(
                        "Dropped an unfinished line (%d bytes) at the end of %s: its request "
                        "was never answered",
                        len(data),
                        journal.path.name,
                    )
                return True
            lines = data[:end].splitlines(keepends=True)
            for start in range(0, len(lines), self.batch_size):
                group = lines[start : start + self.batch_size]
                self._insert([self._parse(line) for line in group])
                offset += sum(len(line) for line in group)
                journal.set_shipped(offset)
        return True

    def _parse(self, line: bytes) -> tuple[Any, ...]:
        row = orjson.loads(line)
        if not self._sqlite:
            row[_TIME] = datetime.fromisoformat(row[_TIME])
        return tuple(row)

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
        self.written += len(rows)

    def _make_insert_sql(self) -> str:
        marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        return (
            f"INSERT INTO {EVENTS_TABLE} ({', '.join(ROW_COLUMNS)}) "
            f"VALUES ({', '.join([marker] * len(ROW_COLUMNS))}) "
            "ON CONFLICT (event_id) DO NOTHING"
        )


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
