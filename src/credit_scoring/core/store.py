"""Prediction events and the client feature store, in one SQLAlchemy database.

SQLite by default, PostgreSQL in production: one URL (``CREDIT_SCORING_DATABASE_URL``).

Events survive the death of the process that answered them. A request appends its event as
one line to the worker's journal file (one ``write``, no fsync: once it returns, the line is
in the operating system's page cache and outlives the process) before the response is sent.
A child process per worker, the shipper (``shipper.py``), ships the journal to the database
in groups and records how far it got in a checkpoint file; when its worker stops, cleanly or
killed, it ships what is left. A journal whose worker and shipper both died is taken over by
the next shipper started on the same folder, or by a live one within ``adopt_seconds``, and
shipped from its checkpoint. Every event carries a unique ``event_id`` and is inserted with
``ON CONFLICT DO NOTHING``, so shipping a group twice (a crash between the commit and the
checkpoint) stores it once.

Covered: the crash of a worker process (and of its shipper), a restart, a database that is
down for a while (the journal keeps growing and is shipped when it is back). Not covered:
the loss of the machine or of its disk before the journal is shipped (the page cache is not
flushed to disk by each request); put the journal folder on a volume that outlives the
container.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "CREDIT_SCORING_DATABASE_URL"
SHIPPER_URL_ENV = "CREDIT_SCORING_SHIPPER_DATABASE_URL"
# The project's own database when no URL is given: this file under the project folder.
DEFAULT_DATABASE_PATH = "data/09_serving/serving.db"
EVENTS_TABLE = "prediction_events"
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
    # lineage: the training run of the model (-> its commit and data hash) and the image
    sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    sa.Column("image", sa.String(255), nullable=True, comment="image that served it"),
    sa.Index(f"uq_{EVENTS_TABLE}_event_id", "event_id", unique=True),
)
# the order of a journal line (a JSON array) and of the INSERT's parameters
ROW_COLUMNS = [c.name for c in events_table.columns if c.name != "id"]
_TIME = ROW_COLUMNS.index("event_time")
# columns added after the table's first release: a database made before gets them at start-up
_ADDED_COLUMNS = {
    "event_id": "VARCHAR(32)",
    "mlflow_run_id": "VARCHAR(64)",
    "image": "VARCHAR(255)",
}


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
    engine = sa.create_engine(url, json_serializer=_json, pool_pre_ping=True, hide_parameters=True)
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
    """Create the events table, or add the columns a table made before them lacks.

    Every process runs this before its first insert (several workers may race here): the
    unique index that ``ON CONFLICT`` needs exists before anything is written.
    """
    try:
        metadata.create_all(engine, tables=[events_table], checkfirst=True)
    except sa.exc.DBAPIError:  # another worker created it between the check and the CREATE
        if not sa.inspect(engine).has_table(EVENTS_TABLE):
            raise
    for name, sql_type in _ADDED_COLUMNS.items():
        if name in {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN {name} {sql_type}"))
        except sa.exc.DBAPIError:  # another worker added it first
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}:
                raise
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE UNIQUE INDEX IF NOT EXISTS uq_{EVENTS_TABLE}_event_id "
                f"ON {EVENTS_TABLE} (event_id)"
            )
        )


def time_ordered_id() -> str:
    """32 hex characters: nanoseconds since the epoch, then 64 random bits.

    Unique like a UUID4, but ids made later sort later: an index on them grows at its end,
    where a random id would touch a random page of it for every insert.
    """
    return f"{time.time_ns():016x}{os.urandom(8).hex()}"


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
    def open(cls, path: Path) -> Journal | None:
        """Open a journal to read it (None if it was removed meanwhile)."""
        try:
            return cls(path, os.open(path, os.O_RDONLY))
        except FileNotFoundError:
            return None

    def try_lock(self) -> bool | None:
        """Lock it if its writer is gone (closed, rotated away or dead): True; False while the
        writer holds it; None if another shipper has shipped and removed it meanwhile."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True if os.fstat(self.fd).st_nlink > 0 else None

    def owner(self) -> int:
        """The pid of the process that wrote it (from its name)."""
        return int(self.path.name.split("-")[1])

    def created(self) -> float:
        """When it was created, in seconds since the epoch (from its name)."""
        return int(self.path.name.split("-")[2].split(".")[0]) / 1e9

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
    """Append prediction events to this process's journal; a child process ships them.

    ``record`` returns once the event is in the journal (in the OS page cache). The shipper
    (``python -m credit_scoring.core.shipper``, one per store) wakes up every
    ``flush_seconds`` and ships what is new, in groups of ``batch_size`` rows, one
    transaction and one checkpoint per group. It runs in its own process so that the
    database work never competes with the API for this process's GIL (a writer thread made
    the p99 latency 2x worse under load, docs/benchmarks.md). It learns through a pipe that
    this process stopped, cleanly or not, then ships the rest and exits.
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
        engine = make_engine(url)
        try:
            create_schema(engine)  # a database that cannot be reached fails the start-up
        finally:
            engine.dispose()
        self.journal_dir = Path(journal) if journal else journal_dir(url)
        self.rotate_bytes = rotate_bytes
        self._lock = threading.Lock()
        self._closed = False
        self._journal = Journal.create(self.journal_dir)
        self._size = 0
        control_read, self._control = os.pipe()
        self._shipper = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "credit_scoring.core.shipper",
                "--journal-dir",
                str(self.journal_dir),
                "--control-fd",
                str(control_read),
                "--owner",
                str(os.getpid()),
                "--batch-size",
                str(batch_size),
                "--flush-seconds",
                str(flush_seconds),
                "--adopt-seconds",
                str(adopt_seconds),
            ],
            env={**os.environ, SHIPPER_URL_ENV: url},  # not in argv: `ps` shows argv
            pass_fds=(control_read,),
        )
        os.close(control_read)

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
            self._size += len(data)
            if self._size >= self.rotate_bytes:
                # the old journal, unlocked, is shipped to its end and removed
                old, self._journal, self._size = self._journal, Journal.create(self.journal_dir), 0
                old.close()

    @staticmethod
    def _row(e: dict[str, Any]) -> tuple[Any, ...]:
        return (
            time_ordered_id(),
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
            e.get("mlflow_run_id"),
            e.get("image"),
        )

    # --- shutdown ---------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking events and wait for the shipper to ship them all. Safe to call twice.

        If the database cannot take them, the journal stays on disk and the next store
        started on the same folder ships it.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._journal.close()  # unlocked: the shipper ships it to its end
        os.write(self._control, b"c")  # a clean stop (end of file alone: the worker died)
        os.close(self._control)  # the shipper ships what is left, then exits
        try:
            self._shipper.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error("The event shipper did not finish in %s s; its journal is kept", timeout)
            self._shipper.kill()


def ship_journal(
    journal: Journal,
    insert: Callable[[list[tuple[Any, ...]]], None],
    batch_size: int,
    complete: bool = False,
) -> int:
    """Insert what the journal holds past its checkpoint; returns the rows shipped.

    A live journal may end in a line still being written: only whole lines are shipped.
    A ``complete`` journal (its writer is gone) may end in a line whose write never
    finished; that request was never answered, and the line is dropped.
    """
    offset = journal.shipped()
    size = journal.size()
    shipped = 0
    while offset < size:
        data = journal.read_from(offset, min(size - offset, _READ_BYTES))
        end = data.rfind(b"\n") + 1
        if end == 0:  # no whole line left
            if offset + len(data) < size:
                raise ValueError(f"a line longer than {_READ_BYTES} bytes in {journal.path}")
            if complete:
                logger.warning(
                    "Dropped an unfinished line (%d bytes) at the end of %s: its request was "
                    "never answered",
                    len(data),
                    journal.path.name,
                )
            break
        lines = data[:end].splitlines(keepends=True)
        for start in range(0, len(lines), batch_size):
            group = lines[start : start + batch_size]
            insert([_padded(orjson.loads(line)) for line in group])
            offset += sum(len(line) for line in group)
            journal.set_shipped(offset)
            shipped += len(group)
    return shipped


def _padded(row: list[Any]) -> tuple[Any, ...]:
    """A journal row; one written before the lineage columns existed gets nulls for them."""
    return (*row, *[None] * (len(ROW_COLUMNS) - len(row)))


def placeholder(engine: Engine) -> str:
    """The driver's parameter marker, for raw ``INSERT ... ON CONFLICT`` statements."""
    return "?" if engine.dialect.paramstyle == "qmark" else "%s"


def insert_rows(engine: Engine) -> Callable[[list[tuple[Any, ...]]], None]:
    """An idempotent bulk insert of journal rows: an ``event_id`` already stored is skipped."""
    marker = placeholder(engine)
    sql = (
        f"INSERT INTO {EVENTS_TABLE} ({', '.join(ROW_COLUMNS)}) "
        f"VALUES ({', '.join([marker] * len(ROW_COLUMNS))}) "
        "ON CONFLICT (event_id) DO NOTHING"
    )
    sqlite = engine.dialect.name == "sqlite"

    def insert(rows: list[tuple[Any, ...]]) -> None:
        if not sqlite:
            rows = [(*r[:_TIME], datetime.fromisoformat(r[_TIME]), *r[_TIME + 1 :]) for r in rows]
        with engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)

    return insert


def read_events(url: str, limit: int | None = None) -> pd.DataFrame:
    import pandas as pd  # not at the top: the shipper process imports this module

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
