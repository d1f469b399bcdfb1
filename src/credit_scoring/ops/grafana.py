"""Grafana dashboards as code (grafana-foundation-sdk), exported to monitoring/grafana/.

    credit-scoring dashboards           # write the JSON files
    credit-scoring dashboards --check   # fail if they differ from the code

Edit this file, not the JSON: a test fails when the exported JSON is not what the code
generates. Every query is plain PromQL over fixed windows (no dashboard variables), so the
integration test can evaluate each one against a real Prometheus and fail on a dead panel.
Grafana finds the files through monitoring/grafana/provisioning/ (datasource uid
``prometheus``); on Kubernetes they become a ConfigMap for the Grafana sidecar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.bargauge import Panel as BarGauge
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.ops.generated import write_or_check

OUTPUT = PROJECT_ROOT / "monitoring/grafana/dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")
SERVICE = 'job="credit_scoring"'
SCORING = f'{SERVICE}, endpoint!~"/metrics|/healthz|/readyz|/livez|other"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


def _target(query: Query, ref: str) -> Dataquery:
    target = Dataquery().expr(query.expr).ref_id(ref).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    return target.instant() if query.instant else target


def _panel(
    kind: type, title: str, description: str, unit: str, *queries: Query, width: int = 8
) -> Any:
    panel = kind().title(title).description(description).unit(unit).datasource(DATASOURCE)
    for i, query in enumerate(queries):
        panel = panel.with_target(_target(query, chr(ord("A") + i)))
    return panel.height(7).span(width)


def timeseries(title: str, description: str, unit: str, *queries: Query, width: int = 8) -> Any:
    return _panel(Timeseries, title, description, unit, *queries, width=width)


def stat(title: str, description: str, unit: str, *queries: Query, width: int = 4) -> Any:
    return _panel(Stat, title, description, unit, *queries, width=width)


def bars(title: str, description: str, unit: str, *queries: Query, width: int = 12) -> Any:
    return _panel(BarGauge, title, description, unit, *queries, width=width)


def rate(metric: str, selector: str = SCORING, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{selector}}}[5m]))"


def service_and_model() -> Dashboard:
    requests = "bentoml_service_request_total"
    buckets = "bentoml_service_request_duration_seconds_bucket"
    predict = f'{SERVICE}, endpoint="/predict"'
    return (
        Dashboard("Credit scoring - service and model")
        .uid("credit-scoring-service")
        .tags(["credit-scoring", "generated"])
        .description("The scoring API (BentoML) and the decisions of the model it serves.")
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("utc")
        .with_row(Row("Service"))
        .with_panel(
            timeseries(
                "Requests per second",
                "Scoring requests by route template (probes and scrapes excluded).",
                "reqps",
                Query(rate(requests, by="endpoint"), "{{endpoint}}"),
            )
        )
        .with_panel(
            timeseries(
                "/predict latency",
                "p50 and p99 over 5 minutes; the objective is p99 < 100 ms (alert "
                "CreditScoringPredictLatencyHigh).",
                "s",
                Query(
                    f"histogram_quantile(0.5, sum by (le) (rate({buckets}{{{predict}}}[5m])))",
                    "p50",
                ),
                Query(
                    f"histogram_quantile(0.99, sum by (le) (rate({buckets}{{{predict}}}[5m])))",
                    "p99",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Refused and failed requests",
                "Share of answers that are client errors (4xx: invalid requests, unknown "
                "clients) and server errors (5xx; alert above 1%).",
                "percentunit",
                Query(
                    f'(sum(rate({requests}{{{SERVICE}, http_response_code=~"4.."}}[5m])) or vector(0))'
                    f" / {rate(requests, SERVICE)}",
                    "4xx",
                ),
                Query(
                    f'(sum(rate({requests}{{{SERVICE}, http_response_code=~"5.."}}[5m])) or vector(0))'
                    f" / {rate(requests, SERVICE)}",
                    "5xx",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Prediction events",
                "Events written to the workers' journals (before each answer) and shipped to "
                "the database. A gap that grows means the database is behind or down: the "
                "journal holds the events meanwhile.",
                "ops",
                Query("sum(rate(credit_scoring_events_journaled_total[5m]))", "journaled"),
                Query("sum(rate(credit_scoring_events_stored_total[5m]))", "stored"),
                width=12,
            )
        )
        .with_panel(
            timeseries(
                "Events not in the database yet",
                "Journaled minus stored: events answered but still only in the journal.",
                "short",
                Query(
                    "clamp_min(sum(credit_scoring_events_journaled_total) - "
                    "sum(credit_scoring_events_stored_total), 0)",
                    "waiting",
                ),
                width=12,
            )
        )
        .with_row(Row("Model"))
        .with_panel(
            stat(
                "Model version serving",
                "Registry version of the champion each worker serves.",
                "none",
                Query(
                    "max by (model_name, model_version) (credit_scoring_model_info)",
                    "v{{model_version}}",
                    True,
                ),
            )
        )
        .with_panel(
            timeseries(
                "Accept rate",
                "Share of scored applications accepted (5-minute window).",
                "percentunit",
                Query(
                    'sum(rate(credit_scoring_decisions_total{decision="accept"}[5m])) / '
                    "sum(rate(credit_scoring_decisions_total[5m]))",
                    "accepted",
                ),
                width=10,
            )
        )
        .with_panel(
            timeseries(
                "Score distribution",
                "Quantiles of the predicted probability of default over 15 minutes: a shift "
                "here is what score drift measures, live.",
                "percentunit",
                Query(
                    "histogram_quantile(0.5, sum by (le) (rate(credit_scoring_predicted_probability_bucket[15m])))",
                    "median",
                ),
                Query(
                    "histogram_quantile(0.9, sum by (le) (rate(credit_scoring_predicted_probability_bucket[15m])))",
                    "p90",
                ),
                width=10,
            )
        )
    )


def monitoring() -> Dashboard:
    m = "credit_scoring_monitoring"
    return (
        Dashboard("Credit scoring - drift, performance and retraining")
        .uid("credit-scoring-monitoring")
        .tags(["credit-scoring", "generated"])
        .description(
            "What the monitoring pipeline pushed (Evidently drift against the serving "
            "version's reference, performance on loans whose outcome is known), the alerts "
            "and the retrain trigger's decisions."
        )
        .refresh("1m")
        .time("now-24h", "now")
        .timezone("utc")
        .with_row(Row("Drift"))
        .with_panel(
            timeseries(
                "Share of drifted features",
                "Evidently's share of the model's features that drifted; dataset drift (and a "
                "retraining) at the threshold.",
                "percentunit",
                Query(f"max by (model_version) ({m}_drift_share)", "v{{model_version}}"),
                Query(f"max({m}_drift_threshold)", "threshold"),
            )
        )
        .with_panel(
            timeseries(
                "Score drift",
                "Drift score of the model's output against its held-out scores.",
                "none",
                Query(f"max by (model_version) ({m}_score_drift)", "v{{model_version}}"),
            )
        )
        .with_panel(
            stat(
                "Last monitoring run",
                "Time since the monitoring pipeline last pushed (alert after 2 hours).",
                "s",
                Query(f"time() - max({m}_last_run_timestamp_seconds)", "age", True),
            )
        )
        .with_panel(
            stat(
                "Events in the window",
                "Prediction events compared with the reference in the last run.",
                "short",
                Query(f"max({m}_window_events)", "events", True),
            )
        )
        .with_panel(
            bars(
                "Drift score per feature (top 15)",
                "Evidently's drift score of each feature in the last run (Wasserstein for "
                "numbers, Jensen-Shannon for categories).",
                "none",
                Query(f"topk(15, max by (feature) ({m}_feature_drift_score))", "{{feature}}", True),
                width=24,
            )
        )
        .with_row(Row("Performance on labelled loans"))
        .with_panel(
            timeseries(
                "AUC: labelled loans vs test set",
                "AUC on the window's events whose outcome is known, and the serving "
                "version's test AUC (alert when 0.05 below).",
                "none",
                Query(f"max by (model_version) ({m}_labelled_auc)", "labelled v{{model_version}}"),
                Query(f"max by (model_version) ({m}_test_auc)", "test v{{model_version}}"),
            )
        )
        .with_panel(
            timeseries(
                "Business cost per application",
                "A missed default costs 10, a refused good client 1 (alert when 25% above "
                "the test set).",
                "none",
                Query(
                    f"max by (model_version) ({m}_labelled_business_cost_per_application)",
                    "labelled v{{model_version}}",
                ),
                Query(
                    f"max by (model_version) ({m}_test_business_cost_per_application)",
                    "test v{{model_version}}",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Labelled loans and default rate",
                "How many events of the window have a known outcome, and how many defaulted.",
                "short",
                Query(f"max({m}_labelled_events)", "labelled events"),
                Query(f"max({m}_labelled_default_rate)", "default rate"),
            )
        )
        .with_row(Row("Alerts and retraining"))
        .with_panel(
            timeseries(
                "Alerts firing",
                "Alerts of the credit-scoring rules that are firing (0 = none).",
                "short",
                Query(
                    'sum by (alertname) (ALERTS{alertstate="firing"}) or vector(0)', "{{alertname}}"
                ),
                width=12,
            )
        )
        .with_panel(
            timeseries(
                "Retrain trigger decisions",
                "Alert deliveries per hour by decision: started, duplicate and cooldown (one "
                "retraining per window), refused (bad token or payload), failed.",
                "short",
                Query(
                    "sum by (decision) (increase(credit_scoring_retrain_decisions_total[1h]))",
                    "{{decision}}",
                ),
                width=12,
            )
        )
    )


DASHBOARDS = {
    "credit_scoring_service.json": service_and_model,
    "credit_scoring_monitoring.json": monitoring,
}


def render(builder: Dashboard) -> str:
    return json.dumps(builder.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of an exported dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard.get("panels", [])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def export(check: bool = False, output: Path = OUTPUT) -> int:
    """Write every dashboard's JSON into ``output``; with ``check``, write nothing and
    compare. Returns the exit code (1: a file differs)."""
    files = {output / name: render(build()) for name, build in DASHBOARDS.items()}
    return write_or_check(
        files,
        check,
        "edit the code in credit_scoring/ops/grafana.py, then run `make dashboards`",
    )
