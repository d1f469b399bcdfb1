"""Data drift and score drift with Evidently 0.7 (``Report``, ``DataDefinition``, presets).

One report per monitoring run: ``DataDriftPreset`` over the model's features (a drift score
and a drifted / not drifted verdict per feature, the share of drifted features and the
dataset verdict) and ``ValueDrift`` of the model's score. The verdicts are Evidently's own
(its tests), read back from the snapshot, so a method's direction (a p-value drifts when
small, a distance when large) is never re-implemented here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel

from credit_scoring.config.monitoring import DriftParams

SCORE = "score"


class DriftResult(BaseModel):
    dataset_drift: bool
    drift_share: float
    drifted_features: int
    features: dict[str, dict[str, Any]]  # name -> {score, drifted, method, kind}
    score: dict[str, Any]  # {value, drifted, method}


def prepare(frame: pd.DataFrame, columns: list[str], categorical: set[str]) -> pd.DataFrame:
    """The columns, typed alike on both sides: categories as text, the rest as float."""
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        values = frame[column] if column in frame.columns else pd.Series(None, index=frame.index)
        if column in categorical:
            out[column] = values.astype("object").where(values.notna(), None)
        else:
            numbers = pd.to_numeric(values, errors="coerce")
            out[column] = numbers if numbers.dtype == "float64" else numbers.astype("float64")
    return out


def build_report(
    features: list[str], categorical: set[str], params: DriftParams
) -> tuple[Any, Any]:
    """Evidently's report (drift of each feature and of the score, with its tests) and the
    data definition of the frames it reads."""
    from evidently import DataDefinition, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[*[f for f in features if f not in categorical], SCORE],
        categorical_columns=[f for f in features if f in categorical],
    )
    report = Report(
        [
            DataDriftPreset(
                columns=features,
                drift_share=params.drift_share,
                num_method=params.num_method,
                num_threshold=params.num_threshold,
                cat_method=params.cat_method,
                cat_threshold=params.cat_threshold,
                per_column_method=params.per_column_method or None,
                per_column_threshold=params.per_column_threshold or None,
            ),
            ValueDrift(column=SCORE, method=params.score_method, threshold=params.score_threshold),
        ],
        include_tests=True,
    )
    return report, definition


def run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    categorical: set[str],
    params: DriftParams,
) -> tuple[Any, DriftResult]:
    """Evidently's report of ``current`` against ``reference`` (both hold ``features`` and
    ``score``); returns the snapshot (for the HTML) and the verdicts."""
    from evidently import Dataset

    # a feature that is empty on one side cannot be compared: Evidently would fail on it
    usable = [
        f
        for f in features
        if f in current.columns and reference[f].notna().any() and current[f].notna().any()
    ]
    report, definition = build_report(usable, categorical, params)
    columns = [*usable, SCORE]
    snapshot = report.run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    return snapshot, read_verdicts(snapshot.dict(), usable, categorical)


def read_verdicts(
    result: dict[str, Any], features: list[str], categorical: set[str]
) -> DriftResult:
    """The drift scores (metrics) and verdicts (tests) of an Evidently snapshot."""
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    share, count = 0.0, 0
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            methods[config["column"]] = str(config.get("method"))
        elif config["type"].endswith(":DriftedColumnsCount"):
            share, count = float(metric["value"]["share"]), int(metric["value"]["count"])
    drifted: dict[str, bool] = {}
    dataset_drift = False
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params["type"].endswith(":ValueDrift"):
            drifted[params["column"]] = test["status"] == "FAIL"
        elif params["type"].endswith(":DriftedColumnsCount"):
            dataset_drift = test["status"] == "FAIL"
    return DriftResult(
        dataset_drift=dataset_drift,
        drift_share=share,
        drifted_features=count,
        features={
            f: {
                "score": scores[f],
                "drifted": drifted.get(f, False),
                "method": methods[f],
                "kind": "categorical" if f in categorical else "numerical",
            }
            for f in features
            if f in scores
        },
        score={
            "value": scores[SCORE],
            "drifted": drifted.get(SCORE, False),
            "method": methods[SCORE],
        },
    )
