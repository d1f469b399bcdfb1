"""The retrain trigger: token, payload validation, de-duplication and cooldown kept in the
database (SQLite and PostgreSQL), concurrent deliveries, restarts, metrics; refusals counted,
not stored."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from credit_scoring.monitoring.backends import Request
from credit_scoring.monitoring.decisions import DecisionStore
from credit_scoring.monitoring.trigger import REFUSALS_KEPT, TriggerSettings, create_app

TOKEN = "s3cret-token-for-tests"


class FakeBackend:
    """Records what it was asked to start (the local backend runs for real in the
    integration test; the remote ones are tested in test_backends.py)."""

    name = "local"

    def __init__(self, fail: bool = False) -> None:
        self.started: list[Request] = []
        self.fail = fail

    def start(self, request: Request) -> str:
        if self.fail:
            raise RuntimeError("cluster unreachable")
        self.started.append(request)
        return f"fake run {request.retrain_id}"


def webhook(
    *fingerprints: str, model: str = "credit_scoring", status: str = "firing"
) -> dict[str, Any]:
    alerts = [
        {
            "status": status,
            "labels": {
                "alertname": "CreditScoringDatasetDrift",
                "model_name": model,
                "action": "retrain",
            },
            "annotations": {"summary": "drift"},
            "startsAt": "2026-11-22T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": f,
        }
        for f in fingerprints
    ]
    return {
        "version": "4",
        "groupKey": '{}/{action="retrain"}:{model_name="credit_scoring"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "retrain-trigger",
        "groupLabels": {"model_name": model},
        "commonLabels": {"model_name": model},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


def client_for(url: str, backend: FakeBackend, **settings: Any) -> TestClient:
    config = TriggerSettings(token=TOKEN, cooldown_seconds=3600, **settings)
    return TestClient(create_app(config, backend, DecisionStore(url)))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_one_retraining_per_cooldown_and_every_decision_kept(db_url: str) -> None:
    backend = FakeBackend()
    client = client_for(db_url, backend)
    first = client.post("/alerts", json=webhook("aa01"), headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json()["decisions"][0]["decision"] == "started"
    again = client.post("/alerts", json=webhook("aa01"), headers=AUTH)
    assert again.json()["decisions"][0]["decision"] == "duplicate"
    other = client.post("/alerts", json=webhook("bb02"), headers=AUTH)
    assert other.json()["decisions"][0]["decision"] == "cooldown"
    assert len(backend.started) == 1
    # a restart of the trigger (a new app on the same database) remembers the cooldown
    restarted = FakeBackend()
    client = client_for(db_url, restarted)
    after = client.post("/alerts", json=webhook("cc03"), headers=AUTH)
    assert after.json()["decisions"][0]["decision"] == "cooldown"
    assert restarted.started == []
    # another model has its own window
    other_model = client.post("/alerts", json=webhook("dd04", model="loan_risk"), headers=AUTH)
    assert other_model.json()["decisions"][0]["decision"] == "started"
    rows = DecisionStore(db_url).decisions()
    assert [r["decision"] for r in rows] == [
        "started",
        "duplicate",
        "cooldown",
        "cooldown",
        "started",
    ]
    assert (
        rows[0]["fingerprints"] == "aa01" and rows[0]["retrain_id"] == backend.started[0].retrain_id
    )
    assert rows[2]["retrain_id"] == rows[0]["retrain_id"]  # the cooldown names the one running


def test_the_cooldown_ends(db_url: str) -> None:
    store = DecisionStore(db_url)
    first = store.claim("m", ["a"], timedelta(seconds=0.2))
    assert first.decision == "started"
    assert store.claim("m", ["b"], timedelta(seconds=0.2)).decision == "cooldown"
    import time

    time.sleep(0.3)
    assert store.claim("m", ["b"], timedelta(seconds=0.2)).decision == "started"


def test_a_storm_of_concurrent_deliveries_starts_one_retraining(db_url: str) -> None:
    stores = [DecisionStore(db_url) for _ in range(4)]  # as if 4 trigger replicas
    results: list[str] = []
    barrier = threading.Barrier(40)

    def deliver(i: int) -> None:
        barrier.wait()
        claim = stores[i % 4].claim("credit_scoring", [f"f{i % 3}"], timedelta(hours=1))
        results.append(claim.decision)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(results)["started"] == 1, Counter(results)
    assert len(results) == 40


def test_a_storm_of_the_same_alert_is_all_duplicates_but_one(db_url: str) -> None:
    """Losers of the race see the winner's fingerprints at once (stored with the claim),
    before the winner has written its decision."""
    stores = [DecisionStore(db_url) for _ in range(4)]
    results: list[str] = []
    barrier = threading.Barrier(24)

    def deliver(i: int) -> None:
        barrier.wait()
        results.append(stores[i % 4].claim("credit_scoring", ["abc"], timedelta(hours=1)).decision)

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(results) == {"started": 1, "duplicate": 23}


def test_refusals_are_4xx_with_the_reason_and_start_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    backend = FakeBackend()
    client = client_for(url, backend)
    missing = client.post("/alerts", json=webhook("aa"))
    forged = client.post("/alerts", json=webhook("aa"), headers={"Authorization": "Bearer nope"})
    not_bearer = client.post("/alerts", json=webhook("aa"), headers={"Authorization": TOKEN})
    for response in (missing, forged, not_bearer):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json() == {"error": "missing or wrong bearer token"}
    bad = webhook("aa")
    bad["version"] = "3"
    response = client.post("/alerts", json=bad, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "version"
    no_alerts = webhook()
    response = client.post("/alerts", json=no_alerts, headers=AUTH)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "alerts"
    broken = webhook("aa")
    del broken["alerts"][0]["fingerprint"]
    response = client.post("/alerts", json=broken, headers=AUTH)
    assert response.json()["errors"][0]["field"] == "alerts.0.fingerprint"
    response = client.post("/alerts", content=b"{not json", headers=AUTH)
    assert response.status_code == 422
    huge = client.post("/alerts", content=b"x" * (2 << 20), headers=AUTH)
    assert huge.status_code == 413
    streamed = client.post("/alerts", content=(b"x" * 1024 for _ in range(2048)), headers=AUTH)
    assert streamed.status_code == 413  # no declared length: counted while read
    assert client.post("/alerts", content=b"x" * (2 << 20)).status_code == 401  # token first
    assert client.get("/alerts", headers=AUTH).status_code == 405
    assert client.get("/../../etc/passwd").status_code == 404
    resolved = client.post("/alerts", json=webhook("aa", status="resolved"), headers=AUTH)
    assert resolved.json() == {"decision": "ignored"}
    assert backend.started == []
    decisions = [r["decision"] for r in DecisionStore(url).decisions()]
    assert decisions == ["ignored"]  # refusals are counted, not stored
    metrics = client.get("/metrics").text
    assert 'credit_scoring_retrain_decisions_total{decision="refused"} 10.0' in metrics
    assert 'credit_scoring_retrain_decisions_total{decision="started"} 0.0' in metrics
    rejected = dict(re.findall(r'rejected_requests_total\{reason="(\w+)"\} (\S+)', metrics))
    assert rejected == {
        "no_token": "3.0",
        "token_wrong": "1.0",
        "invalid": "4.0",
        "too_large": "2.0",
        "not_found": "1.0",
        "client_error": "1.0",  # the 405
    }
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    recent = health["recent_refusals"]
    assert [(r["status"], r["reason"]) for r in recent[:2]] == [
        (401, "no_token"),
        (401, "token_wrong"),
    ]
    assert recent[-1]["endpoint"] == "other"  # the path a scanner invented is not kept
    assert "etc/passwd" not in str(health)


def test_a_flood_of_wrong_tokens_is_counted_and_stores_nothing(tmp_path: Path) -> None:
    """500 deliveries with wrong tokens (five times the record's length): no row, the counter
    at 500, only the last ones kept."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    client = client_for(url, FakeBackend())
    store = DecisionStore(url)
    before = len(store.decisions())
    body = webhook("aa")
    for i in range(500):
        wrong = {"Authorization": f"Bearer wrong-{i}"}
        assert client.post("/alerts", json=body, headers=wrong).status_code == 401
    assert len(store.decisions()) == before == 0
    metrics = client.get("/metrics").text
    assert 'credit_scoring_retrain_rejected_requests_total{reason="token_wrong"} 500.0' in metrics
    assert 'credit_scoring_retrain_decisions_total{decision="refused"} 500.0' in metrics
    recent = client.get("/healthz").json()["recent_refusals"]
    assert len(recent) == REFUSALS_KEPT
    assert all(r["reason"] == "token_wrong" for r in recent)
    assert "wrong-499" not in str(recent)  # no token in the record
    accepted = client.post("/alerts", json=body, headers=AUTH)
    assert accepted.json()["decisions"][0]["decision"] == "started"
    assert [r["decision"] for r in store.decisions()] == ["started"]


def test_a_failed_backend_gives_the_window_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    failing = client_for(url, FakeBackend(fail=True))
    response = failing.post("/alerts", json=webhook("aa"), headers=AUTH)
    assert response.status_code == 502
    assert "cluster unreachable" in response.json()["decisions"][0]["reason"]
    working = FakeBackend()
    response = client_for(url, working).post("/alerts", json=webhook("aa"), headers=AUTH)
    assert response.json()["decisions"][0]["decision"] == "started"
    assert len(working.started) == 1


def test_no_token_refuses_to_start_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDIT_SCORING_TRIGGER_TOKEN", raising=False)
    monkeypatch.setenv("CREDIT_SCORING_ENVIRONMENT", "production")
    with pytest.raises(SystemExit, match="CREDIT_SCORING_TRIGGER_TOKEN is not set"):
        TriggerSettings().check()
    monkeypatch.setenv("CREDIT_SCORING_TRIGGER_TOKEN", "t")
    TriggerSettings().check()
    monkeypatch.setenv("CREDIT_SCORING_ENVIRONMENT", "development")
    monkeypatch.delenv("CREDIT_SCORING_TRIGGER_TOKEN")
    TriggerSettings().check()  # development: allowed, with a warning at start
