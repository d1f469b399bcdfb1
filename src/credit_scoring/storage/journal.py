"""The append-only journal of one API worker, and shipping it to the database.

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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    pass


from credit_scoring.storage.database import sqlite_path

logger = logging.getLogger(__name__)
JOURNAL_GLOB = "events-*.jsonl"
_READ_BYTES = 4 << 20  # journal read per step when shipping


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
