"""Candidate models, the business cost, the decision threshold and hyperparameter search.

Everything a model needs to score a row travels with it in ``TrainedModel``: the input
feature list, the category codes (LightGBM, XGBoost), the estimator and the decision
threshold, so the API never has to guess.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import optuna
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from credit_scoring.config.data_science import Candidate, CostParams, Distribution
from credit_scoring.core.encoding import TREE_KINDS, ModelKind, model_input
from credit_scoring.core.processing import ImputationGroup
from credit_scoring.training.boosters import XGBoostClassifier, check_spark_candidate
from credit_scoring.training.imputation import build_imputer
from credit_scoring.training.metrics import best_threshold

logger = logging.getLogger(__name__)

# --- models -------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A fitted candidate with all it needs to score raw model-input rows."""

    name: str
    kind: ModelKind
    estimator: Any
    features: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    threshold: float = 0.5
    params: dict[str, Any] = field(default_factory=dict)
    cv_auc: float = float("nan")
    cv_business_cost: float = float("nan")  # out-of-fold, at the chosen threshold
    train_rows: int = 0
    fit_seconds: float = 0.0

    def model_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame exactly as the estimator reads it."""
        return model_input(frame[self.features], self.kind, self.categories)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self.model_input(frame)))[:, 1]

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """True = refuse."""
        return np.asarray(scores) >= self.threshold


def _logistic_pipeline(
    frame: pd.DataFrame, groups: list[ImputationGroup], candidate: Candidate, params: dict[str, Any]
) -> Pipeline:
    categorical = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in frame.columns if c not in categorical]
    encode = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            ("categorical", OneHotEncoder(handle_unknown="ignore", min_frequency=20), categorical),
        ]
    )
    weight = "balanced" if candidate.class_weight == "balanced" else None
    model = LogisticRegression(max_iter=2000, class_weight=weight, **{**candidate.fixed, **params})
    return Pipeline(
        [("impute", build_imputer(frame, groups, exclude=[])), ("encode", encode), ("model", model)]
    )


@dataclass(frozen=True)
class FitContext:
    """What every fit of every candidate shares."""

    groups: list[ImputationGroup]
    categories: dict[str, list[str]]
    folds: int
    random_state: int
    monotone_increasing: tuple[str, ...] = ()


def build_estimator(
    candidate: Candidate,
    frame: pd.DataFrame,
    y: np.ndarray,
    params: dict[str, Any],
    ctx: FitContext,
) -> Any:
    """An unfitted estimator for ``frame``'s columns, with the given hyperparameters."""
    if candidate.kind == "dummy":
        return DummyClassifier(strategy="prior")
    if candidate.kind == "logistic_regression":
        return _logistic_pipeline(frame, ctx.groups, candidate, params)
    balanced = candidate.class_weight == "balanced"
    weight = float((y == 0).sum() / max((y == 1).sum(), 1)) if balanced else 1.0
    monotone = [int(c in ctx.monotone_increasing) for c in frame.columns]
    if candidate.kind == "xgboost":
        settings = {
            "random_state": ctx.random_state,
            "scale_pos_weight": weight,
            "monotone_constraints": "(" + ",".join(map(str, monotone)) + ")",
        }
        return XGBoostClassifier(
            {**settings, **candidate.fixed, **params},
            categorical=[c for c in frame.columns if c in ctx.categories],
            num_workers=candidate.spark.num_workers if candidate.spark else None,
        )
    settings = {
        "random_state": ctx.random_state,
        "verbose": -1,
        "scale_pos_weight": weight,
        "monotone_constraints": monotone,
    }
    return lgb.LGBMClassifier(**{**settings, **candidate.fixed, **params})


def _fit(
    estimator: Any,
    kind: ModelKind,
    x: pd.DataFrame,
    y: np.ndarray,
    categories: dict[str, list[str]],
) -> Any:
    if kind == "lightgbm":
        categorical = list(categories) or "auto"
        return estimator.fit(model_input(x, kind, categories), y, categorical_feature=categorical)
    return estimator.fit(model_input(x, kind, categories), y)


def _predict(
    estimator: Any, kind: ModelKind, x: pd.DataFrame, categories: dict[str, list[str]]
) -> np.ndarray:
    return np.asarray(estimator.predict_proba(model_input(x, kind, categories)))[:, 1]


def out_of_fold_scores(
    candidate: Candidate, x: pd.DataFrame, y: np.ndarray, params: dict[str, Any], ctx: FitContext
) -> np.ndarray:
    """Scores of every training row by a model that did not see it (stratified K-fold)."""
    scores = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=ctx.folds, shuffle=True, random_state=ctx.random_state)
    for fit_idx, held_idx in splitter.split(x, y):
        x_fit = x.iloc[fit_idx]
        estimator = build_estimator(candidate, x_fit, y[fit_idx], params, ctx)
        _fit(estimator, candidate.kind, x_fit, y[fit_idx], ctx.categories)
        scores[held_idx] = _predict(estimator, candidate.kind, x.iloc[held_idx], ctx.categories)
    return scores


def suggest(trial: optuna.Trial, space: dict[str, Distribution]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if dist.int:
            params[name] = trial.suggest_int(name, int(dist.low), int(dist.high), log=dist.log)
        else:
            params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return params


def tune(
    name: str, candidate: Candidate, x: pd.DataFrame, y: np.ndarray, ctx: FitContext
) -> tuple[dict[str, Any], float]:
    """Optuna search of the candidate's space on stratified K-fold AUC; best params and AUC."""
    if candidate.search is None or not candidate.search.space:
        return {}, float(roc_auc_score(y, out_of_fold_scores(candidate, x, y, {}, ctx)))
    search = candidate.search

    def objective(trial: optuna.Trial) -> float:
        scores = out_of_fold_scores(candidate, x, y, suggest(trial, search.space), ctx)
        return float(roc_auc_score(y, scores))

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        logger.info(
            "%s: trial %d/%d, CV AUC %.4f (best %.4f)",
            name,
            trial.number + 1,
            search.n_trials,
            trial.value or float("nan"),
            study.best_value,
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=ctx.random_state)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(
        objective, n_trials=search.n_trials, timeout=search.timeout_s, callbacks=[progress]
    )
    return dict(study.best_params), float(study.best_value)


def fit_candidate(
    name: str,
    candidate: Candidate,
    x: pd.DataFrame,
    y: np.ndarray,
    ctx: FitContext,
    cost: CostParams,
) -> TrainedModel:
    """Tune, get out-of-fold scores, choose the threshold on them, refit on all training rows."""
    start = time.perf_counter()
    check_spark_candidate(name, candidate)  # before any work: a hang becomes an error
    best, cv_auc = tune(name, candidate, x, y, ctx)
    oof = out_of_fold_scores(candidate, x, y, best, ctx)
    threshold, oof_cost = best_threshold(y, oof, cost)
    estimator = build_estimator(candidate, x, y, best, ctx)
    fit_start = time.perf_counter()
    _fit(estimator, candidate.kind, x, y, ctx.categories)
    model = TrainedModel(
        name=name,
        kind=candidate.kind,
        estimator=estimator,
        features=list(x.columns),
        categories=ctx.categories if candidate.kind in TREE_KINDS else {},
        threshold=threshold,
        params=best,
        cv_auc=float(roc_auc_score(y, oof)) if len(np.unique(y)) > 1 else cv_auc,
        cv_business_cost=oof_cost,
        train_rows=len(y),
        fit_seconds=time.perf_counter() - fit_start,
    )
    logger.info(
        "%s: CV AUC %.4f, threshold %.4f, tuned+fitted in %.1f s",
        name,
        cv_auc,
        threshold,
        time.perf_counter() - start,
    )
    return model


def directional_violations(
    model: TrainedModel, frame: pd.DataFrame, increasing: list[str], rows: int = 200
) -> dict[str, int]:
    """Rows whose score drops when an 'only raises the risk' feature is increased.

    Each feature is raised in steps of its standard deviation (0 to 5 sd) with every other
    field unchanged; a score that goes down at any step counts as one violation.
    """
    base = frame.head(rows)
    violations = {}
    for feature in (f for f in increasing if f in model.features):
        column = pd.to_numeric(base[feature], errors="coerce").astype("float64")
        step = float(column.std()) or 1.0
        scores = [
            model.predict_proba(base.assign(**{feature: column.fillna(0.0) + k * step}))
            for k in (0.0, 0.5, 1.0, 2.0, 5.0)
        ]
        drops = np.any(np.diff(np.vstack(scores), axis=0) < -1e-12, axis=0)
        violations[feature] = int(drops.sum())
    return violations
