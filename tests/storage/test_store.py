"""Prediction events and client features on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
import sqlalchemy as sa

from credit_scoring.storage.clients import ClientFeatureStore, replace_client_features
from credit_scoring.storage.database import insert_rows, make_engine, utc_now
from credit_scoring.storage.events import EventStore, _event_row, purge_events, read_events
from credit_scoring.storage.journal import Journal, ship_journal
from credit_scoring.storage.schema import AUDIT_TABLE, create_schema


def event(i: int, when: datetime | None = None, client_id: str | None = None) -> dict[str, Any]:
    return {
        "event_time": when or utc_now(),
        "request_id": uuid.uuid4().hex,
        "endpoint": "predict",
        "client_id": client_id,
        "model_name": "credit_scoring",
        "model_version": "3",
        "features": {"AMT_CREDIT": 1000.0 + i, "CODE_GENDER": "F", "EXT_SOURCE_1": None},
        "probability": i / 10_000,
        "decision": "accept",
        "threshold": 0.5,
    }


def test_every_acknowledged_event_is_stored_after_a_clean_close(db_url: str):
    store = EventStore(db_url, batch_size=100, flush_seconds=5.0)
    for i in range(1234):  # more than a group, and a long flush period: close must flush
        store.record(event(i))
    store.close()
    stored = read_events(db_url)
    assert len(stored) == 1234
    assert stored["features"].iloc[7] == {
        "AMT_CREDIT": 1007.0,
        "CODE_GENDER": "F",
        "EXT_SOURCE_1": None,
    }
    assert stored["probability"].tolist() == [i / 10_000 for i in range(1234)]
    with pytest.raises(RuntimeError, match="closed"):
        store.record(event(0))


def test_events_are_written_in_groups_while_serving(db_url: str):
    store = EventStore(db_url, batch_size=50, flush_seconds=0.05)
    try:
        for i in range(120):
            store.record(event(i))
        deadline = time.monotonic() + 10
        while len(read_events(db_url)) < 120 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(read_events(db_url)) == 120  # written without closing the store
    finally:
        store.close()


def test_events_wait_in_the_journal_while_the_database_cannot_take_them(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = EventStore(url, batch_size=10, flush_seconds=5.0)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table disappears under the shipper
        conn.execute(sa.text("DROP TABLE prediction_events"))
    engine.dispose()
    for i in range(25):
        store.record(event(i))
    store.close()
    assert [p.name for p in (tmp_path / "journal").glob("events-*.jsonl")]  # kept, not lost

    again = EventStore(url, flush_seconds=0.05)  # the next start ships them
    again.close()
    stored = read_events(url)
    assert sorted(f["AMT_CREDIT"] for f in stored["features"]) == [1000.0 + i for i in range(25)]
    assert not list((tmp_path / "journal").glob("events-*"))


CRASHING_WORKER = """
import os, signal, sys, time, uuid
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.events import EventStore, read_events
url, count, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = EventStore(url, batch_size=40, flush_seconds=0.05 if mode == "after_commit" else 600)
for i in range(count):
    store.record({"event_time": utc_now(), "request_id": uuid.uuid4().hex, "endpoint": "predict",
                  "client_id": None, "model_name": "m", "model_version": "1",
                  "features": {"i": i}, "probability": 0.5, "decision": "accept",
                  "threshold": 0.5})
if mode == "after_commit":  # everything reaches the database, then the checkpoint is lost
    while len(read_events(url)) < count:
        time.sleep(0.01)
    store._journal.offset_path.unlink()
if mode == "worker":  # the worker alone: its shipper lives on
    os.kill(os.getpid(), signal.SIGKILL)
os.killpg(0, signal.SIGKILL)  # the worker and its shipper
"""


def crash(url: str, count: int, mode: str) -> None:
    import subprocess
    import sys

    worker = subprocess.run(
        [sys.executable, "-c", CRASHING_WORKER, url, str(count), mode],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own process group, which it kills
    )
    assert worker.returncode == -9, worker.stderr


def wait_for_events(url: str, count: int, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        stored = read_events(url)
        if len(stored) >= count or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


def test_a_killed_workers_shipper_ships_what_it_answered(db_url: str):
    crash(db_url, 300, "worker")
    stored = wait_for_events(db_url, 300)
    time.sleep(0.3)  # a duplicate would be late
    stored = read_events(db_url)
    assert sorted(f["i"] for f in stored["features"]) == list(range(300))  # each once


@pytest.mark.parametrize("mode", ["worker_and_shipper", "after_commit"])
def test_events_of_a_killed_worker_and_shipper_are_stored_exactly_once_by_the_next_start(
    db_url: str, mode: str
):
    """kill -9 of both before anything was shipped, or after a commit whose checkpoint was
    lost (the group is shipped again: the idempotency key keeps one copy)."""
    crash(db_url, 300, mode)
    assert len(read_events(db_url)) == (300 if mode == "after_commit" else 0)

    store = EventStore(db_url, flush_seconds=0.05)  # a restarted worker on the same folder
    store.close()
    stored = read_events(db_url)
    assert sorted(f["i"] for f in stored["features"]) == list(range(300))  # each once
    assert stored["event_id"].is_unique
    assert not list(store.journal_dir.glob("events-*"))


def test_a_live_sibling_takes_over_the_journal_of_a_dead_worker(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    sibling = EventStore(url, flush_seconds=0.05, adopt_seconds=0.2)
    try:
        crash(url, 50, "worker_and_shipper")
        assert len(wait_for_events(url, 50)) == 50
    finally:
        sibling.close()
    assert not list(sibling.journal_dir.glob("events-*"))


def test_a_journal_whose_pid_was_reused_by_a_younger_process_is_taken_over(tmp_path: Path):
    """A container restart: the dead writer's pid now belongs to a process started later."""
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    folder = tmp_path / "journal"
    folder.mkdir()
    younger = subprocess.Popen(["sleep", "60"])  # alive, with the dead writer's pid
    an_hour_ago = time.time_ns() - int(3600e9)
    old = folder / f"events-{younger.pid}-{an_hour_ago}.jsonl"
    old.write_bytes(orjson.dumps(list(_event_row(event(1)))) + b"\n")
    sibling = EventStore(url, flush_seconds=0.05, adopt_seconds=0.2, journal=folder)
    try:
        assert len(wait_for_events(url, 1, seconds=10)) == 1  # not 10 minutes later
    finally:
        sibling.close()
        younger.kill()
    assert not old.exists()


def test_a_journal_rotates_and_every_event_is_stored(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = EventStore(url, flush_seconds=0.02, rotate_bytes=2_000)
    first = store._journal.path
    for i in range(40):
        store.record(event(i))
        time.sleep(0.002)
    assert store._journal.path != first  # rotated
    store.close()
    stored = read_events(url)
    assert sorted(f["AMT_CREDIT"] for f in stored["features"]) == [1000.0 + i for i in range(40)]
    assert not list((tmp_path / "journal").glob("events-*"))


def test_an_existing_events_table_gets_the_idempotency_key_and_the_lineage(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the table as the previous release made it
        conn.execute(
            sa.text(
                "CREATE TABLE prediction_events (id INTEGER PRIMARY KEY, event_time DATETIME "
                "NOT NULL, request_id VARCHAR(36) NOT NULL, endpoint VARCHAR(32) NOT NULL, "
                "client_id VARCHAR(128), model_name VARCHAR(128) NOT NULL, model_version "
                "VARCHAR(32) NOT NULL, features JSON NOT NULL, probability FLOAT NOT NULL, "
                "decision VARCHAR(8) NOT NULL, threshold FLOAT NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO prediction_events VALUES (1, '2026-01-01 00:00:00', 'r', 'predict', "
                "NULL, 'm', '1', '{}', 0.1, 'accept', 0.5)"
            )
        )
    engine.dispose()
    store = EventStore(url, flush_seconds=0.05)
    store.record({**event(1), "mlflow_run_id": "a" * 32, "image": "registry/service:abc"})
    store.close()
    stored = read_events(url)
    assert len(stored) == 2 and stored["event_id"].isna().tolist() == [True, False]
    assert stored["mlflow_run_id"].tolist() == [None, "a" * 32]
    assert stored["image"].tolist() == [None, "registry/service:abc"]


def test_a_journal_written_before_the_lineage_columns_is_still_shipped(db_url: str, tmp_path):
    engine = make_engine(db_url)
    create_schema(engine)
    journal = Journal.create(tmp_path / "journal")
    old_line = list(_event_row(event(7)))[:-3]  # the previous release's 11 columns
    journal.append(orjson.dumps(old_line) + b"\n")
    assert ship_journal(journal, insert_rows(engine), batch_size=10, complete=True) == 1
    journal.close()
    engine.dispose()
    (stored,) = read_events(db_url).itertuples()
    assert stored.request_id == old_line[2] and stored.mlflow_run_id is None


def test_retention_purges_only_events_older_than_the_period(db_url: str):
    now = datetime(2026, 6, 1, 12, 0)
    store = EventStore(db_url, batch_size=100)
    store.record_many(
        event(i, when=now - timedelta(days=d)) for i, d in enumerate([1, 29, 31, 400])
    )
    store.close()
    assert purge_events(db_url, older_than_days=30, now=now) == 2
    assert sorted(read_events(db_url)["probability"]) == [0.0, 0.0001]
    assert purge_events(db_url, older_than_days=30, now=now) == 0
    with pytest.raises(ValueError, match="retention_days"):
        purge_events(db_url, older_than_days=0)


def test_retention_command_reads_the_configured_period(tmp_path: Path, monkeypatch):
    from credit_scoring.ops import retention

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = EventStore(url)
    store.record_many([event(0, when=utc_now() - timedelta(days=3650)), event(1)])
    store.close()
    monkeypatch.setenv("CREDIT_SCORING_DATABASE_URL", url)
    audit = EventStore(url, table=AUDIT_TABLE)
    audit.record_many([access(0, when=utc_now() - timedelta(days=3650)), access(1)])
    audit.close()
    assert retention.purge() == 2  # retention_days: 365 in conf/base/parameters_serving.yml
    assert len(read_events(url)) == 1
    assert list(audit_rows(url)["subject"]) == ["advisor-1"]


def access(i: int, when: datetime | None = None) -> dict[str, Any]:
    return {
        "event_time": when or utc_now(),
        "request_id": uuid.uuid4().hex,
        "subject": f"advisor-{i}",
        "roles": "advisor",
        "method": "GET",
        "route": "/clients/{client_id}/score",
        "client_id": "ab" * 32,
        "status": 200,
    }


def audit_rows(url: str) -> pd.DataFrame:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(f"SELECT * FROM {AUDIT_TABLE} ORDER BY id"), conn)
    finally:
        engine.dispose()


def test_audit_records_are_journaled_then_shipped_in_their_own_folder(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    events, audit = EventStore(url), EventStore(url, table=AUDIT_TABLE)
    try:
        assert audit.journal_dir == events.journal_dir / AUDIT_TABLE
        audit.record(access(3))
        events.record(event(3))
    finally:
        audit.close()
        events.close()
    rows = audit_rows(url)
    assert list(rows["subject"]) == ["advisor-3"] and list(rows["status"]) == [200]
    assert len(read_events(url)) == 1  # each table got its own row, nothing crossed
    assert not list(audit.journal_dir.glob("*.jsonl"))  # shipped and removed


def test_client_feature_store_is_replaced_atomically(db_url: str):
    first = pd.DataFrame({"client_id": ["a" * 64, "b" * 64], "AMT_CREDIT": [1.0, None]})
    observed = datetime(2026, 1, 2, 3, 4, 5)
    assert replace_client_features(db_url, first, "client_id", observed_at=observed) == 2
    store = ClientFeatureStore(db_url, "client_id")
    try:
        assert store.get("b" * 64) == {"AMT_CREDIT": None}
        assert store.lookup("b" * 64) == ({"AMT_CREDIT": None}, observed)
        assert store.get("c" * 64) is None
        duplicated = pd.DataFrame({"client_id": ["c" * 64, "c" * 64], "AMT_CREDIT": [1.0, 2.0]})
        with pytest.raises(ValueError, match="one row per"):
            replace_client_features(db_url, duplicated, "client_id")
        assert store.get("a" * 64) == {"AMT_CREDIT": 1.0}  # the bad load damaged nothing
        second = pd.DataFrame({"client_id": ["c" * 64], "AMT_CREDIT": [3.0]})
        replace_client_features(db_url, second, "client_id")
        assert store.get("a" * 64) is None and store.get("c" * 64) == {"AMT_CREDIT": 3.0}
    finally:
        store.close()


def test_an_empty_feature_store_answers_unknown(tmp_path: Path):
    store = ClientFeatureStore(f"sqlite:///{tmp_path / 'empty.db'}", "client_id")
    assert store.get("a" * 64) is None
    store.close()


def test_the_service_refuses_a_missing_or_relative_database_url(monkeypatch):
    from credit_scoring.serving.settings import ServingSettings

    monkeypatch.delenv("CREDIT_SCORING_DATABASE_URL", raising=False)
    with pytest.raises(RuntimeError, match=r"CREDIT_SCORING_DATABASE_URL is not set.*make serve"):
        ServingSettings().require_database_url()
    monkeypatch.setenv("CREDIT_SCORING_DATABASE_URL", "sqlite:///data/09_serving/serving.db")
    with pytest.raises(RuntimeError, match="relative SQLite path"):
        ServingSettings().require_database_url()
    monkeypatch.setenv("CREDIT_SCORING_DATABASE_URL", "sqlite:////srv/credit/serving.db")
    assert ServingSettings().require_database_url() == "sqlite:////srv/credit/serving.db"


def test_the_default_database_is_the_projects_whatever_the_working_directory(
    tmp_path: Path, monkeypatch
):
    from credit_scoring.storage.database import database_url

    monkeypatch.chdir(tmp_path)
    url = database_url("/srv/project", environ={})
    assert url == "sqlite:////srv/project/data/09_serving/serving.db"
    assert database_url("/srv/project", environ={"CREDIT_SCORING_DATABASE_URL": "x"}) == "x"


def test_api_events_are_marked_api_and_an_old_table_gets_the_source_column(db_url: str):
    engine = make_engine(db_url)
    create_schema(engine)
    with engine.begin() as conn:  # a table of the release before the source column
        conn.exec_driver_sql("ALTER TABLE prediction_events DROP COLUMN source")
    create_schema(engine)  # what every process runs before its first insert
    engine.dispose()
    store = EventStore(db_url, batch_size=10)
    store.record(event(1))
    store.close()
    assert read_events(db_url)["source"].tolist() == ["api"]
