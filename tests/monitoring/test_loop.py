"""The monitoring loop end to end, with the real servers on loopback (the demo's scenario at
a smaller size): Prometheus, Alertmanager, Pushgateway, `bentoml serve`, the retrain trigger
and its local backend running a real retraining."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.demo import MONITORING, Demo, Sizes, running
from credit_scoring.ops.grafana import DASHBOARDS, OUTPUT, expressions
from tests.conftest import require_binary


def bench_summarise() -> Any:
    """bench/monitoring_loop.py's summary, imported as the script imports its helpers."""
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    try:
        import monitoring_loop
    finally:
        sys.path.remove(str(PROJECT_ROOT / "bench"))
    return monitoring_loop.summarise


pytestmark = pytest.mark.integration

SIZES = Sizes(train_rows=5000, normal_requests=2000, drifted_requests=2000, window=2000)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    for binary in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway"):
        require_binary(binary)
    lines: list[str] = []
    loop = Demo(tmp_path_factory.mktemp("monitoring-loop"), SIZES, say=lines.append)
    with running(loop):
        loop.setup()
        yield loop
    print("\n".join(lines))


def storm(demo: Demo, alert: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """``count`` concurrent deliveries of Alertmanager's own alert, as a webhook would."""
    payload = {
        "version": "4",
        "groupKey": "storm",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "retrain-trigger",
        "groupLabels": {},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": demo.url("alertmanager"),
        "alerts": [
            {
                "status": "firing",
                "labels": alert["labels"],
                "annotations": alert["annotations"],
                "startsAt": alert["startsAt"],
                "endsAt": alert["endsAt"],
                "generatorURL": alert["generatorURL"],
                "fingerprint": alert["fingerprint"],
            }
        ],
    }
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(count)

    def deliver() -> None:
        barrier.wait()
        response = httpx.post(
            demo.url("trigger") + "/alerts",
            json=payload,
            headers={"Authorization": f"Bearer {demo.token}"},
            timeout=30,
        )
        answers.append(response.json())

    threads = [threading.Thread(target=deliver) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (quoted label values left out)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(r"\b((?:credit_scoring|bentoml)_[a-z0-9_]+|up|ALERTS)\b", bare))


def test_drift_alert_retraining_gate_and_new_version(demo: Demo) -> None:
    # --- normal traffic: numbers pushed, no drift ---------------------------------------
    summary = demo.normal_phase()
    assert summary["pushed"] is True
    assert summary["window"]["events"] == SIZES.normal_requests
    assert summary["drift"]["dataset_drift"] is False, summary["drift"]
    demo.wait(
        "drift share scraped",
        lambda: demo.query('credit_scoring_monitoring_drift_share{model_version="1"}'),
        60,
    )
    assert demo.alert_state("CreditScoringDatasetDrift") is None

    # --- drifted traffic and outcomes: drift found, alert fires -------------------------
    summary = demo.drift_phase()
    assert summary["drift"]["dataset_drift"] is True
    drifted = {f for f, r in summary["drift"]["features"].items() if r["drifted"]}
    assert {"AMT_INCOME_TOTAL", "EXT_SOURCE_3"} <= drifted
    assert summary["performance"]["labelled_events"] >= 1000
    demo.wait(
        "drift flag in Prometheus",
        lambda: demo.query('credit_scoring_monitoring_dataset_drift{model_version="1"} == 1'),
        60,
    )
    demo.follow_alert()

    # --- a storm of duplicate deliveries starts exactly one retraining ------------------
    alert = demo.wait(
        "the alert in Alertmanager",
        lambda: [
            a
            for a in httpx.get(demo.url("alertmanager") + "/api/v2/alerts", timeout=10).json()
            if a["labels"].get("alertname") == "CreditScoringDatasetDrift"
        ],
        60,
    )[0]
    answers = storm(demo, alert, 20)
    assert len(answers) == 20
    run = demo.follow_retraining()

    # Alertmanager's own delivery arrives too (after its group_wait), and changes nothing
    def after_alertmanager() -> list[dict[str, Any]] | None:
        decisions = demo.decisions()
        return decisions if any(d["group_key"] != "storm" for d in decisions) else None

    decisions = demo.wait("Alertmanager's delivery", after_alertmanager, 120)
    counts = Counter(d["decision"] for d in decisions)
    assert counts["started"] == 1, decisions
    assert counts["duplicate"] + counts["started"] == len(decisions), decisions
    assert len(demo.runs()) == 1

    # --- the gate decided, in MLflow; the new model serves -------------------------------
    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{demo.project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    version = client.get_model_version("credit_scoring", run["model_version"])
    assert version.tags["gate.decision"] == "promoted", version.tags
    assert version.tags["retrain_id"] == run["retrain_id"]
    assert str(client.get_model_version_by_alias("credit_scoring", "champion").version) == "2"
    assert demo.serving_version() == "2"
    assert "new version serving" in [s.name for s in demo.steps]

    # --- the benchmark's summary of this same run (bench/monitoring_loop.py) --------------
    results = bench_summarise()(demo, SIZES, run)
    steps = results["seconds_since_first_drifted_request"]
    assert 0 < steps["delivered"] < steps["retraining started"] < steps["new version serving"]
    assert results["sizes"]["window"] == SIZES.window and results["gate"]
    line = demo.traffic(200, drift=True, seed=404)
    assert "200: " in line
    # Prometheus has scraped the new service after it shipped those events
    demo.wait(
        "the new service's events in Prometheus",
        lambda: demo.query("sum(credit_scoring_events_stored_total) > 0"),
        60,
    )

    # --- every PromQL of the dashboards and the rules works on this Prometheus -----------
    names = set(
        httpx.get(demo.url("prometheus") + "/api/v1/label/__name__/values", timeout=10).json()[
            "data"
        ]
    )
    dead = []
    for name in DASHBOARDS:
        for title, expr in expressions(json.loads((OUTPUT / name).read_text())):
            if not demo.query(expr):
                dead.append(f"{name} / {title}: {expr}")
    rules = yaml.safe_load((MONITORING / "prometheus/rules/credit_scoring.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            demo.query(rule["expr"])  # raises if Prometheus cannot evaluate it
            missing = metric_names(rule["expr"]) - names
            if missing:
                dead.append(f"rule {rule['alert']}: no series of {sorted(missing)}")
    assert not dead, "\n".join(dead)

    # --- the narration has every step, with its time --------------------------------------
    names = [s.name for s in demo.steps]
    for step in (
        "alert pending",
        "alert firing",
        "delivered",
        "retraining started",
        "gate decision",
    ):
        assert step in names
    assert "since the first drifted request" in demo.report()


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    """An operator's Ctrl-C in the middle of the demo leaves no server behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    for binary in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway"):
        require_binary(binary)
    workdir = tmp_path / "demo"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "credit_scoring.cli",
            "monitoring-demo",
            "--workdir",
            str(workdir),
            "--train-rows",
            "1500",
            "--requests",
            "300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = []
    assert process.stdout is not None
    deadline = time.monotonic() + 600
    for line in process.stdout:
        seen.append(line)
        if "servers up" in line or time.monotonic() > deadline:
            break
    assert any("servers up" in line for line in seen), "".join(seen)
    started = [
        p
        for p in psutil.process_iter(["cmdline", "cwd"])
        if str(workdir) in " ".join(p.info["cmdline"] or []) + (p.info["cwd"] or "")
        and p.pid != process.pid
    ]
    assert len(started) >= 5, [p.info["cmdline"] for p in started]  # the servers and workers
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=120)[0]
    assert process.returncode == 130, "".join(seen) + rest
    assert "everything the demo started is stopped" in rest
    time.sleep(1)
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
