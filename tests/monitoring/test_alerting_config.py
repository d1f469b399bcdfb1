"""The alert rules fire on their scenario and stay silent otherwise (promtool), and the
Prometheus and Alertmanager configurations are valid (promtool, amtool)."""

from __future__ import annotations

import subprocess

import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from tests.conftest import require_binary

MONITORING = PROJECT_ROOT / "monitoring"


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=MONITORING)


def test_every_alert_rule_has_firing_and_silent_tests() -> None:
    promtool = require_binary("promtool")
    result = run(promtool, "test", "rules", "prometheus/tests/credit_scoring_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((MONITORING / "prometheus/rules/credit_scoring.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((MONITORING / "prometheus/tests/credit_scoring_test.yml").read_text())
    firing, silent = set(), set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert alerts == firing, f"alerts never shown firing: {alerts - firing}"
    assert alerts == silent, f"alerts never shown silent: {alerts - silent}"


def test_a_broken_rule_fails_its_test(tmp_path) -> None:
    """The tests can fail: a drift threshold moved the wrong way breaks them."""
    promtool = require_binary("promtool")
    rules = (MONITORING / "prometheus/rules/credit_scoring.yml").read_text()
    broken = rules.replace(
        "(credit_scoring_monitoring_dataset_drift) == 1",
        "(credit_scoring_monitoring_dataset_drift) == 2",
    )
    assert broken != rules
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/credit_scoring.yml").write_text(broken)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/t.yml").write_text(
        (MONITORING / "prometheus/tests/credit_scoring_test.yml").read_text()
    )
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "tests/t.yml")], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "CreditScoringDatasetDrift" in result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    promtool = require_binary("promtool")
    result = run(promtool, "check", "config", "prometheus/prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_alertmanager_config_is_valid_and_routes_retrain_alerts_to_the_trigger() -> None:
    amtool = require_binary("amtool")
    result = run(amtool, "check-config", "alertmanager/alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    for labels, receivers in (
        (
            ["alertname=CreditScoringDatasetDrift", "action=retrain", "model_name=m"],
            "retrain-trigger,on-call",
        ),
        (
            ["alertname=CreditScoringPerformanceDegraded", "action=retrain"],
            "retrain-trigger,on-call",
        ),
        (["alertname=CreditScoringHighErrorRatio", "severity=critical"], "on-call"),
    ):
        routed = run(
            amtool,
            "config",
            "routes",
            "test",
            "--config.file",
            "alertmanager/alertmanager.yml",
            *labels,
        )
        assert routed.stdout.strip() == receivers, (labels, routed.stdout, routed.stderr)


def test_retrain_alerts_and_routes_agree() -> None:
    """Every alert the rules label action=retrain reaches the trigger, and only those."""
    rules = yaml.safe_load((MONITORING / "prometheus/rules/credit_scoring.yml").read_text())
    retrain = {
        r["alert"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("labels", {}).get("action") == "retrain"
    }
    assert retrain == {
        "CreditScoringDatasetDrift",
        "CreditScoringScoreDrift",
        "CreditScoringPerformanceDegraded",
    }
