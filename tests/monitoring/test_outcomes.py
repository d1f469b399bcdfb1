"""Delayed labels: the outcome file is checked whole, loaded once, joined to the events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from credit_scoring.monitoring.outcomes import OutcomesError, load_and_report, load_file, parse
from credit_scoring.monitoring.store import Window, join_outcomes, read_window
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.events import EventStore

PSEUDONYM = "a" * 64


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_rows_name_line_field_and_fix_and_nothing_is_loaded(
    tmp_path: Path, db_url: str
) -> None:
    good = write(tmp_path / "good.csv", "request_id,observed_at,defaulted\nreq-0001,2026-11-01,1\n")
    assert load_file(good, db_url) == (1, 1)
    bad = write(
        tmp_path / "bad.csv",
        "request_id,client_id,observed_at,defaulted\n"
        "req-0002,,2026-11-01,0\n"
        ",100002,2026-11-01,1\n"  # a raw id
        "req-0003,,2031-01-01,1\n"  # the future
        "req-0004,,yesterday,1\n"
        "req-0005,,2026-11-01,maybe\n"
        ",,2026-11-01,1\n",
    )
    with pytest.raises(OutcomesError) as error:
        load_file(bad, db_url)
    message = str(error.value)
    assert "Nothing was loaded" in message
    assert "line 3, client_id: must be the client's pseudonym" in message
    assert "line 4, observed_at: is in the future" in message
    assert "line 5, observed_at: must be an ISO date" in message
    assert "line 6, defaulted: must be 1 (defaulted) or 0 (repaid)" in message
    assert "line 7, row: needs a request_id or a client_id" in message
    # req-0002 was valid but nothing of the bad file went in; the good file is intact
    assert load_file(good, db_url) == (1, 0)


def test_extra_columns_are_refused_as_personal_data_minimisation(tmp_path: Path) -> None:
    path = write(
        tmp_path / "o.csv",
        "request_id,observed_at,defaulted,SK_ID_CURR\nr-000001,2026-11-01,1,100002\n",
    )
    with pytest.raises(OutcomesError, match=r"unknown column.*SK_ID_CURR"):
        parse(path)


def test_the_command_reports_and_exits_2_on_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    path = write(tmp_path / "o.csv", "request_id,observed_at,defaulted\nr-000001,2026-11-01,yes\n")
    assert load_and_report(path, url) == 0
    assert "1 new, 0 already loaded" in capsys.readouterr().out
    path.write_text("request_id,observed_at,defaulted\nr-000001,2026-11-01,2\n")
    assert load_and_report(path, url) == 2
    assert "line 2, defaulted" in capsys.readouterr().err


def test_the_window_joins_outcomes_by_request_and_by_client(tmp_path: Path, db_url: str) -> None:
    store = EventStore(db_url, batch_size=100, flush_seconds=0.05, journal=str(tmp_path / "j"))
    ids = [uuid.uuid4().hex for _ in range(4)]
    for i, request_id in enumerate(ids):
        store.record(
            {
                "event_time": utc_now(),
                "request_id": request_id,
                "endpoint": "predict",
                "client_id": PSEUDONYM if i == 3 else None,
                "model_name": "credit_scoring",
                "model_version": "2" if i else "1",
                "features": {"AMT_CREDIT": 1000.0 * i, "CODE_GENDER": "F"},
                "probability": 0.1 * i,
                "decision": "refuse" if i > 1 else "accept",
                "threshold": 0.15,
            }
        )
    store.close()
    csv = tmp_path / "o.csv"
    csv.write_text(
        "request_id,client_id,observed_at,defaulted\n"
        f"{ids[1]},,2026-11-01,1\n"
        f",{PSEUDONYM},{(utc_now() + pd.Timedelta(hours=1)).isoformat()[:19]},0\n"
    )
    load_file(csv, db_url)
    window = read_window(db_url, "credit_scoring", Window(last_events=10))
    assert list(window["request_id"]) == ids[1:]  # version 2 only: the newest event's version
    assert window["model_version"].unique().tolist() == ["2"]
    assert window["AMT_CREDIT"].tolist() == [1000.0, 2000.0, 3000.0]
    assert window["defaulted"].tolist()[0] == 1.0
    assert pd.isna(window["defaulted"].tolist()[1])
    assert window["defaulted"].tolist()[2] == 0.0  # by client, observed after the decision
    last_two = read_window(db_url, "credit_scoring", Window(last_events=2))
    assert list(last_two["request_id"]) == ids[2:]
    v1 = read_window(db_url, "credit_scoring", Window(model_version="1"))
    assert list(v1["request_id"]) == ids[:1]
    assert read_window(db_url, "other_model", Window()).empty
    # a batch scoring run's events: watched only when the window asks for them
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE prediction_events SET source = 'batch' WHERE request_id = :r"),
            {"r": ids[3]},
        )
    engine.dispose()
    api_only = read_window(db_url, "credit_scoring", Window(last_events=10))
    assert list(api_only["request_id"]) == ids[1:3] and set(api_only["source"]) == {"api"}
    both = read_window(db_url, "credit_scoring", Window(sources=("api", "batch")))
    assert list(both["request_id"]) == ids[1:] and list(both["source"])[-1] == "batch"


def test_an_outcome_observed_before_the_decision_does_not_label_it() -> None:
    events = pd.DataFrame(
        {"request_id": ["r1"], "client_id": [PSEUDONYM], "event_time": [pd.Timestamp("2026-11-10")]}
    )
    outcomes = pd.DataFrame(
        {
            "request_id": [None],
            "client_id": [PSEUDONYM],
            "observed_at": [pd.Timestamp("2026-11-01")],
            "defaulted": [1],
        }
    )
    assert join_outcomes(events, outcomes).isna().all()


def test_retention_deletes_old_outcomes_only(tmp_path: Path, db_url: str) -> None:
    from credit_scoring.monitoring.store import purge_outcomes

    old = (utc_now() - pd.Timedelta(days=400)).date().isoformat()
    recent = (utc_now() - pd.Timedelta(days=10)).date().isoformat()
    path = write(
        tmp_path / "o.csv",
        f"request_id,observed_at,defaulted\nr-old-0001,{old},1\nr-new-0001,{recent},0\n",
    )
    assert load_file(path, db_url) == (2, 2)
    assert purge_outcomes(db_url, 365) == 1
    assert purge_outcomes(db_url, 365) == 0
    assert load_file(path, db_url) == (2, 1)  # the old one is gone; the recent one stays
