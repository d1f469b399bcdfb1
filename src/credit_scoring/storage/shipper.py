"""The event shipper: one child process per API worker, shipping its journal to the database.

Started by ``EventStore`` (``python -m credit_scoring.storage.shipper``), not by hand. Every
``flush_seconds`` it ships the new whole lines of its worker's journal; every
``adopt_seconds`` it also ships, to their end, journals whose writer and shipper are both
gone (a worker and its shipper killed together). The worker holds the write end of a pipe:
end of file means the worker stopped (a clean stop writes one byte first), and the shipper
ships what is left and exits. It ignores SIGTERM and SIGINT, which a terminal or a process
manager sends to the whole process group: it stops when its worker has stopped, not before.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from credit_scoring.storage.database import SHIPPER_URL_ENV, insert_rows, make_engine
from credit_scoring.storage.journal import JOURNAL_GLOB, Journal, ship_journal
from credit_scoring.storage.schema import EVENTS_TABLE, TABLES

logger = logging.getLogger("credit_scoring.shipper")
CLEAN_STOP = b"c"
# Below the API in the CPU scheduler: under a load that saturates the cores, requests go
# first and the database lags behind (the journal holds the backlog; it catches up after).
NICENESS = 10


def _counted(
    insert: Callable[[list[tuple[Any, ...]]], None], table: str
) -> Callable[[list[tuple[Any, ...]]], None]:
    """Count the stored events where the service's metrics are collected (the Prometheus
    multiprocess folder that BentoML gives its workers, inherited by their shippers)."""
    if table != EVENTS_TABLE or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return insert
    from prometheus_client import Counter

    stored = Counter(
        "credit_scoring_events_stored",
        "Prediction events shipped from the journals to the database",
    )

    def counted(rows: list[tuple[Any, ...]]) -> None:
        insert(rows)
        stored.inc(len(rows))

    return counted


class Shipper:
    def __init__(
        self, folder: Path, owner: int, url: str, batch_size: int, table: str = EVENTS_TABLE
    ) -> None:
        self.folder = folder
        self.prefix = f"events-{owner}-"
        self.engine = make_engine(url)
        self.insert = _counted(insert_rows(self.engine, TABLES[table]), table)
        self.batch_size = batch_size
        self.live: dict[Path, Journal] = {}  # the worker's journals, open for reading
        self.stale_seconds = 600.0

    def tick(self, adopt: bool, worker_died: bool = False) -> bool:
        """Ship what is new; True when nothing was left behind (every ship succeeded)."""
        done = True
        for path in sorted(self.folder.glob(JOURNAL_GLOB)):
            mine = path.name.startswith(self.prefix)
            if not (mine or adopt):
                continue
            journal = self.live.pop(path, None) or Journal.open(path)
            if journal is None:
                continue
            owner_alive = _alive(journal.owner(), journal.created())
            if not mine and owner_alive and not _stale(path, self.stale_seconds):
                journal.close()  # a live worker's journal (maybe rotated away): its own shipper's
                continue
            try:
                state = journal.try_lock()
                if state is None:  # shipped and removed by another shipper
                    journal.close()
                    continue
                if state:  # its writer is gone: ship it to the end, remove it
                    count = ship_journal(journal, self.insert, self.batch_size, complete=True)
                    journal.remove()
                    if not mine:
                        logger.warning(
                            "Shipped %d prediction event(s) left by a stopped worker (%s)",
                            count,
                            path.name,
                        )
                    elif worker_died and count:
                        logger.warning(
                            "Worker %s died: shipped the %d answered prediction event(s) it "
                            "had not shipped yet",
                            journal.owner(),
                            count,
                        )
                    continue
                if mine:
                    ship_journal(journal, self.insert, self.batch_size)
                    self.live[path] = journal
                    continue
            except Exception:  # the database may be down: the journal keeps the events
                logger.exception("Shipping prediction events from %s failed", path.name)
                done = False
            journal.close()  # someone else's live journal, or one that failed: unlocked
        return done


def _alive(pid: int, since: float) -> bool:
    """Whether the journal's writer runs: its pid exists and is not a younger process.

    After a container restart the pid namespace starts again while the journal volume stays:
    the dead writer's pid is often taken by a process of the new container, which started
    after the journal was created (``since``, seconds since the epoch).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _start_time(pid)
    return started is None or started <= since + 1.0


def _start_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch), from /proc; None where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, StopIteration, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in ticks


def _stale(path: Path, seconds: float) -> bool:
    """Not written for a long while: its pid may be alive only because it was reused."""
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def ship(
    journal_dir: Path,
    control_fd: int,
    owner: int,
    batch_size: int = 500,
    flush_seconds: float = 0.2,
    adopt_seconds: float = 5.0,
    table: str = EVENTS_TABLE,
) -> int:
    """Ship worker ``owner``'s journals in ``journal_dir`` until end of file on
    ``control_fd``; returns the exit code (1: events left in the journal)."""
    os.nice(NICENESS)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s [%(levelname)s] [event-shipper:%(process)d] %(message)s",
    )
    url = os.environ.pop(SHIPPER_URL_ENV)
    shipper = Shipper(journal_dir, owner, url, batch_size, table)
    next_adoption = 0.0
    while True:
        readable, _, _ = select.select([control_fd], [], [], flush_seconds)
        stopped = bool(readable)
        died = stopped and os.read(control_fd, 1) != CLEAN_STOP
        adopt = stopped or time.monotonic() >= next_adoption
        if adopt:
            next_adoption = time.monotonic() + adopt_seconds
        done = shipper.tick(adopt, worker_died=died)
        if not stopped:
            continue
        for attempt in range(3):  # the last events: a few more tries if the database failed
            if done:
                break
            time.sleep(0.5 * (attempt + 1))
            done = shipper.tick(adopt=True, worker_died=died)
        if not done:
            logger.error(
                "Prediction events not yet in the database are kept in %s; the next start of "
                "the service ships them",
                journal_dir,
            )
        shipper.engine.dispose()
        return 0 if done else 1


if __name__ == "__main__":
    # Spawned by EventStore as `python -m`; the bento ships no cli.py, so its command is here.
    import click

    @click.command(help=__doc__.splitlines()[0])
    @click.option("--journal-dir", type=click.Path(path_type=Path), required=True)
    @click.option("--control-fd", type=int, required=True)
    @click.option("--owner", type=int, required=True, help="pid of the worker")
    @click.option("--batch-size", type=int, default=500)
    @click.option("--flush-seconds", type=float, default=0.2)
    @click.option("--adopt-seconds", type=float, default=5.0)
    @click.option("--table", type=click.Choice(sorted(TABLES)), default=EVENTS_TABLE)
    def command(**options: Any) -> None:
        raise SystemExit(ship(**options))

    command()
