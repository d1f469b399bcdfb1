"""Prediction events and access audit records: written to the worker's journal before the
response, shipped by the shipper, read and purged (retention) from the database."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


from credit_scoring.storage.database import SHIPPER_URL_ENV, json_text, make_engine
from credit_scoring.storage.journal import Journal, journal_dir, time_ordered_id
from credit_scoring.storage.schema import (
    AUDIT_TABLE,
    EVENTS_TABLE,
    TABLES,
    create_schema,
    events_table,
)

logger = logging.getLogger(__name__)


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
        json_text(e["features"]),
        float(e["probability"]),
        e["decision"],
        float(e["threshold"]),
        e.get("mlflow_run_id"),
        e.get("image"),
        e.get("source", "api"),
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
