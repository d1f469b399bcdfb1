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
AUDIT_TABLE = "access_audit"
# Who read which client's data, when, through which route, with what outcome: written like
# the prediction events (journal, then shipper), purged by the retention command.
audit_table = sa.Table(
    AUDIT_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(32), nullable=False, comment="idempotency key"),
    sa.Column("event_time", sa.DateTime(), nullable=False, index=True, comment="UTC"),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False, index=True, comment="token `sub`"),
    sa.Column("roles", sa.String(64), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("route", sa.String(64), nullable=False, comment="route template, never the path"),
    sa.Column("client_id", sa.String(128), nullable=True, index=True, comment="pseudonym"),
    sa.Column("status", sa.SmallInteger(), nullable=False, comment="HTTP status answered"),
    sa.Index(f"uq_{AUDIT_TABLE}_event_id", "event_id", unique=True),
)
TABLES = {EVENTS_TABLE: events_table, AUDIT_TABLE: audit_table}


def row_columns(table: sa.Table) -> list[str]:
    """The order of a journal line (a JSON array) and of the INSERT's parameters."""
    return [c.name for c in table.columns if c.name != "id"]


ROW_COLUMNS = row_columns(events_table)
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


def create_schema(engine: Engine, table: sa.Table = events_table) -> None:
    """Create the table, or add the columns an events table made before them lacks.

    Every process runs this before its first insert (several workers may race here): the
    unique index that ``ON CONFLICT`` needs exists before anything is written.
    """
    try:
        metadata.create_all(engine, tables=[table], checkfirst=True)
    except sa.exc.DBAPIError:  # another worker created it between the check and the CREATE
        if not sa.inspect(engine).has_table(table.name):
            raise
    if table is not events_table:
        return
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
    (``python -m credit_scoring.storage.shipper``, one per store) wakes up every
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
        table: str = EVENTS_TABLE,
    ) -> None:
        engine = make_engine(url)
        try:
            create_schema(engine, TABLES[table])  # an unreachable database fails the start-up
        finally:
            engine.dispose()
        self._row = _ROWS[table]
        folder = Path(journal) if journal else journal_dir(url)
        # each table's journals in their own folder: a shipper ships one table
        self.journal_dir = folder if table == EVENTS_TABLE else folder / table
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
                "credit_scoring.storage.shipper",
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
                "--table",
                table,
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


def _event_row(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        time_ordered_id(),
        _when(e["event_time"]),
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


def _audit_row(e: dict[str, Any]) -> tuple[Any, ...]:
    return (
        time_ordered_id(),
        _when(e["event_time"]),
        e["request_id"],
        e["subject"],
        e["roles"],
        e["method"],
        e["route"],
        e.get("client_id"),
        int(e["status"]),
    )


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="microseconds")


_ROWS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {
    EVENTS_TABLE: _event_row,
    AUDIT_TABLE: _audit_row,
}


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
            insert([orjson.loads(line) for line in group])
            offset += sum(len(line) for line in group)
            journal.set_shipped(offset)
            shipped += len(group)
    return shipped


def placeholder(engine: Engine) -> str:
    """The driver's parameter marker, for raw ``INSERT ... ON CONFLICT`` statements."""
    return "?" if engine.dialect.paramstyle == "qmark" else "%s"


def insert_rows(
    engine: Engine, table: sa.Table = events_table
) -> Callable[[list[tuple[Any, ...]]], None]:
    """An idempotent bulk insert of journal rows: an ``event_id`` already stored is skipped.

    A row written before the events table's lineage columns existed gets nulls for them.
    """
    columns = row_columns(table)
    marker = placeholder(engine)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))}) "
        "ON CONFLICT (event_id) DO NOTHING"
    )
    sqlite = engine.dialect.name == "sqlite"
    at = columns.index("event_time")
    pad = [None] * len(columns)

    def insert(rows: list[tuple[Any, ...]]) -> None:
        rows = [(*r, *pad[len(r) :]) for r in rows]
        if not sqlite:
            rows = [(*r[:at], datetime.fromisoformat(r[at]), *r[at + 1 :]) for r in rows]
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


def purge_events(
    url: str, older_than_days: int, now: datetime | None = None, table: str = EVENTS_TABLE
) -> int:
    """Delete rows (events, or audit rows) older than the retention period; returns how many."""
    if older_than_days < 1:
        raise ValueError(f"retention_days must be at least 1 (got {older_than_days})")
    cutoff = (now or datetime.now(UTC)).replace(tzinfo=None) - timedelta(days=older_than_days)
    target = TABLES[table]
    engine = make_engine(url)
    try:
        create_schema(engine, target)
        with engine.begin() as conn:
            result = conn.execute(target.delete().where(target.c.event_time < cutoff))
        return int(result.rowcount or 0)
    finally:
        engine.dispose()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --- client feature store ---------------------------------------------------------------


OBSERVED_AT = "observed_at"


def replace_client_features(
    url: str, frame: pd.DataFrame, id_column: str, observed_at: datetime | None = None
) -> int:
    """Replace the client feature table in one transaction (readers never see it half-done).

    Each row records when its data were observed (``observed_at``, UTC): the frame's own
    column when it has one, else ``observed_at`` or now (the extraction being stored), so
    that an advisor is warned about data too old to be accurate (GDPR art. 5.1.d).
    """
    if frame[id_column].isna().any() or frame[id_column].duplicated().any():
        raise ValueError(f"client features need one row per non-empty '{id_column}'")
    if OBSERVED_AT not in frame.columns:
        frame = frame.assign(**{OBSERVED_AT: observed_at or utc_now()})
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


# A filter on the client feature store: (column, operator, value); operators: eq (one of the
# values, a list), ge, le, prefix (of the id). Columns are checked by the caller (the API).
Filter = tuple[str, str, Any]


class ClientFeatureStore:
    """Read known clients' features: one by pseudonymised id, or a filtered page or sample."""

    def __init__(self, url: str, id_column: str) -> None:
        self.engine = make_engine(url)
        self.id_column = id_column
        self._query = sa.text(
            f'SELECT * FROM "{CLIENT_FEATURES_TABLE}" WHERE "{id_column}" = :client_id'
        )

    def available(self) -> bool:
        return sa.inspect(self.engine).has_table(CLIENT_FEATURES_TABLE)

    def lookup(self, client_id: str) -> tuple[dict[str, Any], datetime | None] | None:
        """The client's stored features and when they were observed; None if unknown."""
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
        features = {k: v for k, v in row.items() if k not in (self.id_column, OBSERVED_AT)}
        return features, _as_datetime(row.get(OBSERVED_AT))

    def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's stored features, or None for an unknown id (or an empty store)."""
        found = self.lookup(client_id)
        return None if found is None else found[0]

    def _where(self, filters: list[Filter]) -> list[Any]:
        clauses: list[Any] = []
        for column, op, value in filters:
            col: Any = sa.column(column)
            if op == "eq":
                clauses.append(col.in_(list(value)))
            elif op == "ge":
                clauses.append(col >= value)
            elif op == "le":
                clauses.append(col <= value)
            elif op == "prefix":  # ids are hex: no LIKE wildcard can be in them
                clauses.append(col.startswith(str(value), autoescape=True))
            else:
                raise ValueError(f"unknown filter operator {op!r}")
        return clauses

    def _rows(
        self, filters: list[Filter], columns: list[str] | None, limit: int, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and ``limit`` of them from ``offset`` (``columns``, or all),
        in id order (pseudonyms are uniformly spread: a stable, unbiased order). The table is
        named, not reflected: no schema query on the request path."""
        table = sa.table(CLIENT_FEATURES_TABLE)
        where = self._where(filters)
        selected: list[Any] = (
            [sa.column(c) for c in columns] if columns else [sa.literal_column("*")]
        )
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
            count = int(total.scalar_one())
            rows = conn.execute(
                sa.select(*selected)
                .select_from(table)
                .where(*where)
                .order_by(sa.column(self.id_column))
                .limit(limit)
                .offset(offset)
            )
            return count, [dict(r) for r in rows.mappings()]

    def search(
        self, filters: list[Filter], columns: list[str], limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and one page of them (id, observed_at, ``columns``)."""
        count, rows = self._rows(filters, [self.id_column, OBSERVED_AT, *columns], limit, offset)
        for row in rows:  # SQLite gives the text it stored, PostgreSQL a datetime: one format
            row[OBSERVED_AT] = _as_datetime(row[OBSERVED_AT])
        return count, [jsonable(row) for row in rows]

    def sample(self, filters: list[Filter], size: int) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and up to ``size`` of them (all their features)."""
        count, rows = self._rows(filters, None, size)
        meta = (self.id_column, OBSERVED_AT)
        return count, [{k: v for k, v in row.items() if k not in meta} for row in rows]

    def close(self) -> None:
        self.engine.dispose()


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))  # SQLite may give text back


def jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON can carry it: datetimes as ISO text, NaN as null."""
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float) and value != value:  # NaN
            value = None
        out[key] = value
    return out
