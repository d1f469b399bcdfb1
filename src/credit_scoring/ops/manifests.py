"""Kubernetes objects generated from ``monitoring/``: ``credit-scoring manifests``.

``monitoring/`` is the one source of the alert rules, the scrape jobs and the dashboards: the
plain binaries (``make monitoring-demo``) read it directly, and this module turns it into
the objects the prometheus-operator and Grafana's sidecar read in a cluster, written to
``deploy/k8s/base/generated/``:

- ``prometheus-rule.yaml``: a PrometheusRule holding every rule group, verbatim;
- ``service-monitors.yaml``: a ServiceMonitor for the scrape jobs of our own services (the
  Pushgateway belongs to the monitoring stack), whose ``job`` label is the job's name, so
  the rules' ``up{job="credit_scoring"}`` mean the same thing in both places;
- ``grafana-dashboards.yaml``: one ConfigMap per dashboard, labelled for the sidecar.

``--check`` compares instead of writing (a test runs it): edit ``monitoring/``, then
``make manifests``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.ops.generated import write_or_check

MONITORING = PROJECT_ROOT / "monitoring"
OUTPUT = PROJECT_ROOT / "deploy/k8s/base/generated"
# The Service label whose value becomes the target's `job` (ServiceMonitor jobLabel).
JOB_LABEL = "credit-scoring/metrics-job"
# Jobs of prometheus.yml run by the monitoring stack, not by this deployment.
EXTERNAL_JOBS = {"pushgateway"}
# kube-prometheus-stack selects rules and monitors by its release label: set yours here.
OPERATOR_LABELS = {"release": "kube-prometheus-stack"}
HEADER = (
    "# GENERATED from monitoring/ by `make manifests` (credit_scoring/ops/manifests.py).\n"
    "# Do not edit: change monitoring/, then regenerate; a test fails when they differ.\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(objects: list[dict[str, Any]]) -> str:
    body = "---\n".join(
        yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
        for o in objects
    )
    return HEADER + body


def prometheus_rule(monitoring: Path = MONITORING) -> dict[str, Any]:
    groups: list[dict[str, Any]] = []
    for path in sorted((monitoring / "prometheus/rules").glob("*.yml")):
        groups += yaml.safe_load(path.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "credit-scoring", "labels": dict(OPERATOR_LABELS)},
        "spec": {"groups": groups},
    }


def service_monitor(monitoring: Path = MONITORING) -> dict[str, Any]:
    config = yaml.safe_load((monitoring / "prometheus/prometheus.yml").read_text())
    interval = config.get("global", {}).get("scrape_interval", "30s")
    jobs = [j for j in config["scrape_configs"] if j["job_name"] not in EXTERNAL_JOBS]
    paths = {j.get("metrics_path", "/metrics") for j in jobs}
    intervals = {j.get("scrape_interval", interval) for j in jobs}
    if len(paths) != 1 or len(intervals) != 1:
        raise ValueError(
            "monitoring/prometheus/prometheus.yml: the services' jobs differ in metrics_path or "
            "scrape_interval; give each its own ServiceMonitor endpoint in deploy_manifests.py."
        )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "credit-scoring", "labels": dict(OPERATOR_LABELS)},
        "spec": {
            "jobLabel": JOB_LABEL,
            "selector": {
                "matchExpressions": [
                    {
                        "key": JOB_LABEL,
                        "operator": "In",
                        "values": [j["job_name"] for j in jobs],
                    }
                ]
            },
            "endpoints": [{"port": "http", "path": paths.pop(), "interval": intervals.pop()}],
        },
    }


def dashboard_config_maps(monitoring: Path = MONITORING) -> list[dict[str, Any]]:
    maps = []
    for path in sorted((monitoring / "grafana/dashboards").glob("*.json")):
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "grafana-dashboard-" + path.stem.replace("_", "-"),
                    "labels": {"grafana_dashboard": "1"},  # the sidecar's default label
                    "annotations": {"grafana_folder": "Credit scoring"},
                },
                "data": {path.name: path.read_text()},
            }
        )
    return maps


def render(monitoring: Path = MONITORING) -> dict[str, str]:
    """File name → content of every generated manifest."""
    return {
        "prometheus-rule.yaml": _dump([prometheus_rule(monitoring)]),
        "service-monitors.yaml": _dump([service_monitor(monitoring)]),
        "grafana-dashboards.yaml": _dump(dashboard_config_maps(monitoring)),
    }


def generate(check: bool = False, output: Path = OUTPUT) -> int:
    """Write the objects into ``output``; with ``check``, write nothing and compare.
    Returns the exit code (1: a file differs)."""
    files = {output / name: text for name, text in render().items()}
    return write_or_check(
        files,
        check,
        "they are generated from monitoring/: run `make manifests`, after `make dashboards` if "
        "the dashboards' code changed",
    )
