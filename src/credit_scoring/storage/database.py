"""The one SQLAlchemy database of the service: its URL, engines, inserts, time and JSON.

SQLite by default, PostgreSQL in production: one URL (``CREDIT_SCORING_DATABASE_URL``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    pass


from credit_scoring.storage.schema import events_table, row_columns

logger = logging.getLogger(__name__)

DATABASE_URL_ENV = "CREDIT_SCORING_DATABASE_URL"
SHIPPER_URL_ENV = "CREDIT_SCORING_SHIPPER_DATABASE_URL"
# The project's own database when no URL is given: this file under the project folder.
DEFAULT_DATABASE_PATH = "data/09_serving/serving.db"


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


def json_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout (several workers write)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # hide_parameters: an error message must not carry an event (a pseudonym) into the logs
    engine = sa.create_engine(
        url, json_serializer=json_text, pool_pre_ping=True, hide_parameters=True
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


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def as_datetime(value: Any) -> datetime | None:
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
