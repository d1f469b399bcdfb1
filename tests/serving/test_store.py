"""Prediction events and client features on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from credit_scoring.core.store import (
    ClientFeatureStore,
    EventStore,
    purge_events,
    read_events,
    replace_client_features,
    utc_now,
)

POSTGRES_URL = os.environ.get(
    "CREDIT_SCORING_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            schema = f"t_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI at {POSTGRES_URL}: {exc}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'serving.db'}"
    else:
        yield from postgres_schema_url()


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
    assert len(stored) == 1234 == store.written
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
        while store.written < 120 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(read_events(db_url)) == 120  # written without closing the store
    finally:
        store.close()


def test_events_that_cannot_be_written_are_kept_in_a_spill_file(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = EventStore(url, batch_size=10, flush_seconds=5.0, spill_dir=tmp_path / "unsent")
    with store.engine.begin() as conn:  # the table disappears under the writer
        conn.execute(sa.text("DROP TABLE prediction_events"))
    for i in range(25):
        store.record(event(i))
    store.close()
    lines = [
        line for f in (tmp_path / "unsent").glob("*.jsonl") for line in f.read_text().splitlines()
    ]
    spilled = sorted(json.loads(line)["features"]["AMT_CREDIT"] for line in lines)
    assert spilled == [1000.0 + i for i in range(25)]


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
    from credit_scoring import retention

    url = f"sqlite:///{tmp_path / 'serving.db'}"
    store = EventStore(url)
    store.record_many([event(0, when=utc_now() - timedelta(days=3650)), event(1)])
    store.close()
    monkeypatch.setenv("CREDIT_SCORING_DATABASE_URL", url)
    assert retention.main([]) == 1  # retention_days: 365 in conf/base/parameters_serving.yml
    assert len(read_events(url)) == 1


def test_client_feature_store_is_replaced_atomically(db_url: str):
    first = pd.DataFrame({"client_id": ["a" * 64, "b" * 64], "AMT_CREDIT": [1.0, None]})
    assert replace_client_features(db_url, first, "client_id") == 2
    store = ClientFeatureStore(db_url, "client_id")
    try:
        assert store.get("b" * 64) == {"AMT_CREDIT": None}
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
    from credit_scoring.core.store import database_url

    monkeypatch.chdir(tmp_path)
    url = database_url("/srv/project", environ={})
    assert url == "sqlite:////srv/project/data/09_serving/serving.db"
    assert database_url("/srv/project", environ={"CREDIT_SCORING_DATABASE_URL": "x"}) == "x"
