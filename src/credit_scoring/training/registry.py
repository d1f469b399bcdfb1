"""The MLflow model registry: log, register, and the gate that guards the champion alias.

A new version always gets the alias ``challenger``. It takes ``champion`` only if it beats
the current champion on the same held-out rows (lower business cost, AUC not worse by more
than a tolerance) and beats the dummy baseline. Moving the alias is the very last step of a
run, so a failed or interrupted run never changes the champion.

The steps are separate (log, measure the champion, decide, record); the data_science
pipeline runs each as a node and moves the aliases in the last one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import jinja2
import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from credit_scoring.config.data_science import CostParams
from credit_scoring.training.boosters import XGBoostClassifier
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import TrainedModel

logger = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
SCORE_COLUMN = "score"  # the model's score in the monitoring reference
# Types a scikit-learn model of this project may hold, beyond those skops trusts by default.
SKOPS_TRUSTED_TYPES = [
    "sklearn.compose._column_transformer._RemainderColsList",
    "sklearn.impute._iterative._ImputerTriplet",
    "sklearn.linear_model._bayes.BayesianRidge",
    "numpy.dtype",
]


@dataclass(frozen=True)
class ModelVersion:
    """A version registered by this run, and where it comes from."""

    name: str
    version: str
    run_id: str
    git_commit: str | None = None
    data_hash: str | None = None


@dataclass(frozen=True)
class ChampionScore:
    """The current champion measured on the new test rows.

    ``metrics`` is None when there is no champion (``version`` None) or when the two cannot
    be compared (``problem`` says why, in one sentence).
    """

    metrics: dict[str, float] | None = None
    version: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: list[str]
    challenger: dict[str, float]
    champion: dict[str, float] | None
    dummy: dict[str, float]
    champion_version: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # kept: a key of gate_report.json

    def summary(self) -> str:
        verdict = "PROMOTED to champion" if self.promote else "NOT promoted (stays challenger)"
        return f"{verdict}: " + "; ".join(self.reasons)


# The gate's reasons, one sentence each (Jinja2): tags on the version, the gate report, the card.
GATE_REASONS = {
    "beats_dummy": "cost {{ '%.0f'|format(new) }} < dummy {{ '%.0f'|format(dummy) }}",
    "loses_to_dummy": "cost {{ '%.0f'|format(new) }} does not beat dummy {{ '%.0f'|format(dummy) }}",
    "first": "no champion yet",
    "cheaper": "cost {{ '%.0f'|format(new) }} < champion {{ '%.0f'|format(old) }}",
    "not_cheaper": "cost {{ '%.0f'|format(new) }} not below champion {{ '%.0f'|format(old) }}",
    "auc_ok": "AUC {{ '%.4f'|format(new) }} within {{ tol }} of champion {{ '%.4f'|format(old) }}",
    "auc_worse": "AUC {{ '%.4f'|format(new) }} worse than champion {{ '%.4f'|format(old) }} - {{ tol }}",
    "champion_other_columns": (
        "champion v{{ version }} was trained on other columns ({{ missing|length }} of its "
        "features are not in the new data, e.g. {{ missing[:3]|join(', ') }}), so the two "
        "cannot be compared on the same rows - promote by hand after review"
    ),
    "champion_failed": (
        "champion v{{ version }} could not score the new test rows ({{ error }}) - promote by "
        "hand after review"
    ),
}
_ENVIRONMENT = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
_COMPILED = {name: _ENVIRONMENT.from_string(text) for name, text in GATE_REASONS.items()}


def say(reason: str, **values: Any) -> str:
    """One gate reason in words, from its template."""
    return _COMPILED[reason].render(**values)


def decide(
    challenger: dict[str, float],
    champion: ChampionScore,
    dummy: dict[str, float],
    auc_tolerance: float,
) -> GateDecision:
    """Pure decision from metrics measured on the same held-out rows.

    Promote only a model that costs less than the dummy baseline and, when there is a
    champion, less than the champion too, with an AUC at most ``auc_tolerance`` below the
    champion's. A champion that could not be measured (``champion.problem``) blocks it.
    """
    reasons, ok = [], True
    new_cost, new_auc = challenger["business_cost"], challenger["auc"]
    if new_cost < dummy["business_cost"]:
        reasons.append(say("beats_dummy", new=new_cost, dummy=dummy["business_cost"]))
    else:
        ok = False
        reasons.append(say("loses_to_dummy", new=new_cost, dummy=dummy["business_cost"]))
    if champion.metrics is None:
        reasons.append(say("first"))
    else:
        old_cost, old_auc = champion.metrics["business_cost"], champion.metrics["auc"]
        if new_cost < old_cost:
            reasons.append(say("cheaper", new=new_cost, old=old_cost))
        else:
            ok = False
            reasons.append(say("not_cheaper", new=new_cost, old=old_cost))
        if new_auc >= old_auc - auc_tolerance:
            reasons.append(say("auc_ok", new=new_auc, old=old_auc, tol=auc_tolerance))
        else:
            ok = False
            reasons.append(say("auc_worse", new=new_auc, old=old_auc, tol=auc_tolerance))
    if champion.problem:
        ok = False
        reasons.append(champion.problem)
    return GateDecision(
        promote=ok,
        reasons=reasons,
        challenger=challenger,
        champion=champion.metrics,
        dummy=dummy,
        champion_version=champion.version,
    )


def _metadata(model: TrainedModel) -> dict[str, Any]:
    return {
        "candidate": model.name,
        "kind": model.kind,
        "threshold": model.threshold,
        "features": model.features,
        "categories": model.categories,
        "params": json.loads(json.dumps(model.params, default=str)),
    }


def log_model(model: TrainedModel, example: pd.DataFrame, registered_name: str) -> Any:
    """Log the model in the active run and register it; returns the ModelInfo.

    LightGBM goes in its native text format and XGBoost in its own UBJ (no pickled code);
    scikit-learn models in skops format with an explicit list of trusted types.
    """
    rows = example[model.features].head(20)
    # Numbers as float64 in the signature: an integer column may be missing at scoring time.
    rows = rows.astype(
        {c: "float64" for c in rows.columns if pd.api.types.is_numeric_dtype(rows[c])}
    )
    scores = model.predict_proba(rows)
    seen = model.model_input(rows)  # what the estimator reads: the logged signature
    if model.kind == "lightgbm":
        return mlflow.lightgbm.log_model(
            model.estimator.booster_,
            name="model",
            registered_model_name=registered_name,
            signature=infer_signature(seen, scores),
            input_example=seen.head(3),
            metadata=_metadata(model),
        )
    if model.kind == "xgboost":
        return mlflow.xgboost.log_model(
            model.estimator.booster_,
            name="model",
            model_format="ubj",  # XGBoost's own binary JSON: trees and feature types, no code
            registered_model_name=registered_name,
            signature=infer_signature(seen, scores),
            input_example=seen.head(3),
            metadata=_metadata(model),
        )
    return mlflow.sklearn.log_model(
        model.estimator,
        name="model",
        registered_model_name=registered_name,
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=infer_signature(seen, scores),
        input_example=seen.head(3),
        metadata=_metadata(model),
        pyfunc_predict_fn="predict_proba",
    )


def reference_sample(
    model: TrainedModel, held_out: pd.DataFrame, rows: int, seed: int
) -> pd.DataFrame:
    """The monitoring reference of a version: a sample of rows the model did not learn from
    (validation and test), as the model saw them (processed features), with the model's
    score. Training rows would not do for the score: the model scores the rows it learned
    from more confidently than any new applicant."""
    sample = held_out.sample(rows, random_state=seed) if len(held_out) > rows else held_out
    reference = sample[model.features].copy()
    reference[SCORE_COLUMN] = model.predict_proba(sample)
    return reference.reset_index(drop=True)


class _BoosterAsClassifier:
    """A native LightGBM Booster with the predict_proba of the scikit-learn API."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster_ = booster

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        positive = np.asarray(self.booster_.predict(frame), dtype=float)
        return np.column_stack([1.0 - positive, positive])


def load_model(model_uri: str) -> TrainedModel:
    """Rebuild a ``TrainedModel`` (estimator, features, categories, threshold) from MLflow."""
    info = mlflow.models.get_model_info(model_uri)
    meta = info.metadata or {}
    if meta.get("kind") == "lightgbm":
        estimator: Any = _BoosterAsClassifier(mlflow.lightgbm.load_model(model_uri))
    elif meta.get("kind") == "xgboost":
        estimator = XGBoostClassifier.from_booster(mlflow.xgboost.load_model(model_uri))
    else:
        estimator = mlflow.sklearn.load_model(model_uri)
    return TrainedModel(
        name=meta.get("candidate", "unknown"),
        kind=meta.get("kind", "logistic_regression"),
        estimator=estimator,
        features=list(meta["features"]),
        categories=dict(meta.get("categories") or {}),
        threshold=float(meta["threshold"]),
        params=dict(meta.get("params") or {}),
    )


def champion_version(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def measure_champion(
    client: MlflowClient,
    name: str,
    test: pd.DataFrame,
    target: str,
    cost: CostParams,
    beta: float,
) -> ChampionScore:
    """The current champion's metrics on these test rows (none if there is no champion)."""
    current = champion_version(client, name)
    if current is None:
        return ChampionScore()
    version = str(current.version)
    try:
        champion = load_model(f"models:/{name}@{CHAMPION}")
        missing = [f for f in champion.features if f not in test.columns]
        if missing:
            problem = say("champion_other_columns", version=version, missing=missing)
            return ChampionScore(version=version, problem=problem)
        scores = champion.predict_proba(test)
    except (KeyError, ValueError, TypeError, MlflowException) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        problem = say("champion_failed", version=version, error=first_line)
        return ChampionScore(version=version, problem=problem)
    y = test[target].to_numpy()
    metrics = classification_metrics(y, scores, champion.decide(scores), cost, beta)
    return ChampionScore(metrics=metrics, version=version)


def record_decision(client: MlflowClient, name: str, version: str, decision: GateDecision) -> None:
    """Tags on the version, then (last of all) the aliases."""
    client.set_model_version_tag(
        name, version, "gate.decision", "promoted" if decision.promote else "rejected"
    )
    client.set_model_version_tag(name, version, "gate.reasons", "; ".join(decision.reasons)[:5000])
    for key, value in decision.challenger.items():
        client.set_model_version_tag(name, version, f"test.{key}", f"{value:.6g}")
    client.set_registered_model_alias(name, CHALLENGER, version)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, version)
        logger.info("%s v%s is the new champion", name, version)
    else:
        logger.info("%s v%s stays challenger: %s", name, version, decision.summary())


def decision_report(decision: GateDecision, name: str, version: str) -> dict[str, Any]:
    report = asdict(decision)
    report.update({"model_name": name, "version": version, "summary": decision.summary()})
    return report
