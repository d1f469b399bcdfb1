"""``monitoring`` in ``conf/base/parameters_monitoring.yml``: every key is checked."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl

from credit_scoring.core.schema import Strict


class DriftParams(Strict):
    """``monitoring.drift``: methods and thresholds (Evidently's names: wasserstein, psi,
    jensenshannon, ks, chisquare, kl_div, hellinger, ...)."""

    num_method: str = "wasserstein"
    num_threshold: float = Field(0.1, gt=0)
    cat_method: str = "jensenshannon"
    cat_threshold: float = Field(0.1, gt=0)
    drift_share: float = Field(
        0.1, gt=0, le=1, description="dataset drift when at least this share of features drift"
    )
    score_method: str = "wasserstein"
    score_threshold: float = Field(0.1, gt=0)
    per_column_method: dict[str, str] = Field(default_factory=dict)
    per_column_threshold: dict[str, float] = Field(default_factory=dict)


class WindowParams(Strict):
    last_events: int | None = Field(
        5000, ge=1, description="the newest N events of the model version (null = no limit)"
    )
    last_hours: float | None = Field(
        None, gt=0, description="only events of the last T hours (null = no age limit)"
    )
    model_version: str | None = Field(
        None, description="the version to monitor (null = the one of the newest event)"
    )
    min_events: int = Field(
        200, ge=1, description="fewer events than this: no drift verdict (too few to judge)"
    )
    sources: list[Literal["api", "batch"]] = Field(
        default_factory=lambda: ["api"],  # type: ignore[arg-type]
        min_length=1,
        description="whose events: api (new applications, the default) and/or batch (the "
        "portfolio scoring run, which would otherwise fill the window every night)",
    )


class PerformanceParams(Strict):
    min_labelled: int = Field(
        100, ge=1, description="fewer labelled events than this: no AUC and cost (too noisy)"
    )


class MonitoringParams(Strict):
    model_name: str = "credit_scoring"
    experiment_name: str = "credit_scoring"
    window: WindowParams = Field(default_factory=lambda: WindowParams())
    drift: DriftParams = Field(default_factory=lambda: DriftParams())
    performance: PerformanceParams = Field(default_factory=lambda: PerformanceParams())
    pushgateway_url: HttpUrl | None = Field(
        None,
        description="Prometheus Pushgateway that receives the numbers (null: not pushed; the "
        "environment variable CREDIT_SCORING_PUSHGATEWAY_URL wins)",
    )
    job: str = Field("credit_scoring_monitoring", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    experiment_suffix: str = Field(
        "-monitoring", description="MLflow experiment of the runs: <experiment_name><suffix>"
    )
