"""Training, selection, evaluation, explanation and registration of the scoring model."""

from __future__ import annotations

import logging
import time
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import shap
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from credit_scoring.config.data_science import DataScienceParams, load_params
from credit_scoring.core.contract import DataContract, load_contract
from credit_scoring.core.encoding import category_codes, nan_for_missing
from credit_scoring.core.errors import ContractError
from credit_scoring.core.lineage import lineage_tags
from credit_scoring.core.processing import SPLIT_COLUMN, ProcessingParams, load_processing
from credit_scoring.core.spec import MODEL_CARD_ARTIFACT, SERVING_ARTIFACTS
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import (
    FitContext,
    TrainedModel,
    directional_violations,
    fit_candidate,
)
from credit_scoring.training.privacy import pseudonymise_series
from credit_scoring.training.registry import (
    decide,
    decision_report,
    log_model,
    log_reference,
    record_decision,
    score_champion,
)
from credit_scoring.training.reporting import evaluation_figures, model_card, stack_figures

logger = logging.getLogger(__name__)

CARD_COLUMNS = (
    "candidate",
    "selection_basis",
    "cv_business_cost",
    "auc",
    "business_cost",
    "recall",
    "precision",
    "fbeta",
    "directional_violations",
    "threshold",
)


def _columns(data_contract: DataContract) -> tuple[str, str]:
    contract = load_contract(data_contract)
    if contract.target is None:
        raise ContractError("Training needs data_contract.target (the label column).")
    return contract.pseudonymised_id_column, contract.target.column


def _xy(frame: pd.DataFrame, id_col: str, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    return nan_for_missing(frame.drop(columns=[id_col, target])), frame[target].to_numpy()


def split_data(primary: pd.DataFrame, data_contract: DataContract) -> dict[str, pd.DataFrame]:
    """The train / validation / test rows, as assigned by data_processing (``split`` column)."""
    _columns(data_contract)
    if SPLIT_COLUMN not in primary.columns:
        raise ContractError(
            f"The primary table has no '{SPLIT_COLUMN}' column: re-run the data_processing "
            "pipeline, which assigns the split before it learns anything from the data."
        )
    parts = {
        name: primary[primary[SPLIT_COLUMN] == name].drop(columns=SPLIT_COLUMN)
        for name in ("train", "validation", "test")
    }
    logger.info("split: %s", {name: len(part) for name, part in parts.items()})
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def check_leakage(
    train: pd.DataFrame, data_contract: DataContract, params: DataScienceParams
) -> dict[str, Any]:
    """AUC of each feature alone on the training target; fail (or warn) above the threshold."""
    settings = load_params(params).leakage
    id_col, target = _columns(data_contract)
    x, y = _xy(train, id_col, target)
    aucs = {}
    for column in x.columns:
        values = x[column]
        if not pd.api.types.is_numeric_dtype(values):  # a category scores as its default rate
            values = values.map(pd.Series(y, index=x.index).groupby(values).mean())
        values = pd.to_numeric(values, errors="coerce").fillna(
            values.median() if values.notna().any() else 0
        )
        auc = roc_auc_score(y, values) if values.nunique() > 1 else 0.5
        aucs[column] = float(max(auc, 1 - auc))
    suspects = {c: a for c, a in aucs.items() if a > settings.max_single_feature_auc}
    report = {
        "max_single_feature_auc": settings.max_single_feature_auc,
        "suspects": suspects,
        "feature_auc": dict(sorted(aucs.items(), key=lambda kv: -kv[1])),
    }
    if suspects:
        message = (
            f"Possible target leakage: {suspects} predict the target alone above "
            f"data_science.leakage.max_single_feature_auc={settings.max_single_feature_auc} "
            f"(conf/base/parameters_data_science.yml). Remove the feature(s) from the data "
            f"contract, or set leakage.action: warn if this is expected."
        )
        if settings.action == "fail":
            raise ContractError(message)
        logger.warning(message)
    return report


def train_candidates(
    train: pd.DataFrame,
    data_contract: DataContract,
    processing_params: ProcessingParams,
    params: DataScienceParams,
) -> dict[str, TrainedModel]:
    """Tune (Optuna, stratified K-fold), pick each candidate's threshold out-of-fold, refit."""
    settings = load_params(params)
    id_col, target = _columns(data_contract)
    x, y = _xy(train, id_col, target)
    contract = load_contract(data_contract)
    declared = {c: spec.allowed for c, spec in contract.columns.items() if spec.allowed}
    ctx = FitContext(
        groups=list(load_processing(processing_params).imputation),
        categories=category_codes(x, declared),
        folds=settings.cv_folds,
        random_state=settings.random_state,
        monotone_increasing=tuple(settings.monotone_increasing),
    )
    return {
        name: fit_candidate(name, candidate, x, y, ctx, settings.cost)[0]
        for name, candidate in settings.candidates.items()
    }


def _timed_scores(model: TrainedModel, frame: pd.DataFrame) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    scores = model.predict_proba(frame)
    return scores, (time.perf_counter() - start) / max(len(frame), 1) * 1000


def select_model(
    models: dict[str, TrainedModel],
    validation: pd.DataFrame,
    data_contract: DataContract,
    params: DataScienceParams,
) -> dict[str, Any]:
    """Compare candidates; the lowest business cost wins (AUC reported beside).

    The cost is measured on the validation split, or, with few rows (``selection``), on the
    out-of-fold cross-validation scores already computed in training, which use every
    training row instead of one small split. The table says which basis was used.
    """
    settings = load_params(params)
    _, target = _columns(data_contract)
    y = validation[target].to_numpy()
    rows = []
    for name, model in models.items():
        scores, ms_per_1000 = _timed_scores(model, validation)
        metrics = classification_metrics(
            y, scores, model.decide(scores), settings.cost, settings.fbeta_beta
        )
        violations = directional_violations(model, validation, settings.monotone_increasing)
        rows.append(
            {
                "candidate": name,
                "kind": model.kind,
                "cv_auc": model.cv_auc,
                "cv_business_cost": model.cv_business_cost,
                **metrics,
                "directional_violations": sum(violations.values()),
                "threshold": model.threshold,
                "fit_seconds": model.fit_seconds,
                "predict_seconds_per_1000_rows": ms_per_1000,
            }
        )
    basis = _selection_basis(settings, models, len(validation))
    order = (
        ["cv_business_cost", "cv_auc"] if basis == "cross_validation" else ["business_cost", "auc"]
    )
    comparison = pd.DataFrame(rows).assign(selection_basis=basis)
    comparison = comparison.sort_values(order, ascending=[True, False], kind="stable")
    # A model whose risk can fall when overdue debt rises is not eligible, whatever its cost.
    eligible = comparison[comparison["directional_violations"] == 0]
    if eligible.empty:
        raise ContractError(
            "Every candidate breaks data_science.monotone_increasing (risk falls when one of "
            f"{settings.monotone_increasing} rises); see the comparison:\n{comparison.to_string()}"
        )
    best = str(eligible.iloc[0]["candidate"])
    logger.info("selected %s (%s):\n%s", best, basis, comparison.to_string(index=False))
    return {"selected": models[best], "comparison": comparison.reset_index(drop=True)}


def _selection_basis(
    settings: DataScienceParams, models: dict[str, TrainedModel], validation_rows: int
) -> str:
    mode = settings.selection.mode
    if mode != "auto":
        return mode
    rows = max((m.train_rows for m in models.values()), default=0) + validation_rows
    return (
        "cross_validation"
        if rows < settings.selection.cross_validation_below_rows
        else "validation"
    )


def _dummy(models: dict[str, TrainedModel]) -> TrainedModel:
    return next(m for m in models.values() if m.kind == "dummy")


def evaluate_model(
    selected: TrainedModel,
    models: dict[str, TrainedModel],
    test: pd.DataFrame,
    true_probabilities: pd.DataFrame | None,
    pseudonymisation_key: str,
    data_contract: DataContract,
    params: DataScienceParams,
) -> dict[str, Any]:
    """Held-out test metrics, the dummy's on the same rows, the oracle AUC, and the figures."""
    settings = load_params(params)
    _, target = _columns(data_contract)
    y = test[target].to_numpy()
    scores = selected.predict_proba(test)
    refuse = selected.decide(scores)
    metrics = classification_metrics(y, scores, refuse, settings.cost, settings.fbeta_beta)
    dummy = _dummy(models)
    dummy_scores = dummy.predict_proba(test)
    dummy_metrics = classification_metrics(
        y, dummy_scores, dummy.decide(dummy_scores), settings.cost, settings.fbeta_beta
    )
    oracle = _oracle_auc(test, true_probabilities, pseudonymisation_key, data_contract)
    if oracle is not None:
        metrics["oracle_auc"] = oracle
        metrics["auc_over_oracle"] = metrics["auc"] / oracle
    logger.info("test: %s", {k: round(v, 4) for k, v in metrics.items()})
    return {
        "metrics": metrics,
        "dummy_metrics": dummy_metrics,
        "mlflow_metrics": {k: {"value": v, "step": 0} for k, v in metrics.items()}
        | {f"dummy_{k}": {"value": v, "step": 0} for k, v in dummy_metrics.items()},
        **evaluation_figures(y, scores, refuse, selected.threshold, selected.name),
    }


def _oracle_auc(
    test: pd.DataFrame, truth: pd.DataFrame | None, key: str, data_contract: DataContract
) -> float | None:
    contract = load_contract(data_contract)
    if truth is None or truth.empty or contract.id_column is None or contract.target is None:
        return None
    pseudonyms = pseudonymise_series(truth[contract.id_column], key)
    probability = pd.Series(truth["TRUE_PROBABILITY"].to_numpy(), index=pseudonyms.to_numpy())
    matched = test[contract.pseudonymised_id_column].map(probability)
    if matched.isna().any():
        return None  # not the generator's population: no oracle
    return float(roc_auc_score(test[contract.target.column], matched))


def explain_model(
    selected: TrainedModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    data_contract: DataContract,
    params: DataScienceParams,
) -> dict[str, Any]:
    """Global SHAP (beeswarm, mean |SHAP|), local SHAP waterfalls, permutation importance."""
    settings = load_params(params)
    cfg = settings.explanations
    id_col, target = _columns(data_contract)
    sample = test.sample(min(cfg.sample_size, len(test)), random_state=settings.random_state)
    explanation = _shap_values(selected, train, sample)
    figures: dict[str, Any] = {}
    if explanation is not None:
        plt.figure()
        shap.plots.beeswarm(explanation, max_display=15, show=False)
        figures["shap_summary"] = _current_figure("SHAP values (test sample)")
        plt.figure()
        shap.plots.bar(explanation, max_display=15, show=False)
        figures["shap_importance_plot"] = _current_figure("Mean |SHAP|")
        mean_abs = (
            pd.Series(
                np.abs(explanation.values).mean(axis=0),
                index=[_original_feature(n, selected.features) for n in explanation.feature_names],
            )
            .groupby(level=0)
            .sum()
            .sort_values(ascending=False)
        )
        importance = {str(k): float(v) for k, v in mean_abs.items()}
        scores = selected.predict_proba(sample)
        picks = _example_rows(scores, selected.threshold, cfg.examples)
        waterfalls = []
        for i in picks:
            plt.figure()
            shap.plots.waterfall(explanation[i], max_display=10, show=False)
            fig = plt.gcf()
            fig.suptitle(f"score {scores[i]:.3f} (threshold {selected.threshold:.3f})")
            waterfalls.append(fig)
        figures["shap_waterfalls"] = stack_figures(
            waterfalls, "Local explanations (example clients)"
        )
    else:
        importance = {}
        for key in ("shap_summary", "shap_importance_plot", "shap_waterfalls"):
            figures[key] = _empty_figure(f"{selected.name}: nothing to explain (constant model)")
    x, y = _xy(sample, id_col, target)
    perm = permutation_importance(
        _Scorer(selected),
        x,
        y,
        scoring="roc_auc",
        n_repeats=cfg.permutation_repeats,
        random_state=settings.random_state,
        n_jobs=1,
    )
    permutation = pd.DataFrame(
        {
            "feature": x.columns,
            "auc_drop_mean": perm.importances_mean,
            "auc_drop_std": perm.importances_std,
        }
    ).sort_values("auc_drop_mean", ascending=False)
    return {
        "shap_importance": importance,
        "permutation_importance": permutation.reset_index(drop=True),
        **figures,
    }


class _Scorer(ClassifierMixin, BaseEstimator):
    """Adapts a TrainedModel to scikit-learn's scorer protocol (for permutation importance)."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model
        self.classes_ = np.array([0, 1])

    def fit(self, *args: Any) -> _Scorer:
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        positive = self.model.predict_proba(frame)
        return np.column_stack([1 - positive, positive])

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(frame)


def _shap_values(
    model: TrainedModel, train: pd.DataFrame, sample: pd.DataFrame
) -> shap.Explanation | None:
    """SHAP values of the score: exact TreeSHAP for LightGBM, exact linear SHAP for the
    logistic regression (in its design space: scaled numbers and one-hot categories)."""
    if model.kind == "dummy":
        return None
    if model.kind == "lightgbm":
        values = shap.TreeExplainer(model.estimator)(model.model_input(sample))
        if values.values.ndim == 3:  # (rows, features, classes): keep the default class
            values = values[:, :, 1]
        values.data = sample[model.features].to_numpy()  # show raw values, not codes
        return values
    prep, linear = model.estimator[:-1], model.estimator[-1]
    design = prep.transform(model.model_input(sample))
    background = prep.transform(
        model.model_input(train.sample(min(500, len(train)), random_state=0))
    )
    names = [n.split("__", 1)[-1] for n in prep.get_feature_names_out()]
    explainer = shap.LinearExplainer(linear, shap.maskers.Independent(np.asarray(background)))
    values = explainer(np.asarray(design))
    values.feature_names = names
    return values


def _original_feature(name: str, features: list[str]) -> str:
    """One-hot column 'OCCUPATION_TYPE_Drivers' belongs to feature 'OCCUPATION_TYPE'."""
    if name in features:
        return name
    owners = [f for f in features if name.startswith(f + "_")]
    return max(owners, key=len) if owners else name


def _example_rows(scores: np.ndarray, threshold: float, count: int) -> list[int]:
    order = np.argsort(scores)
    near = int(np.argmin(np.abs(scores - threshold)))
    picks = [int(order[-1]), near, int(order[0])]
    return list(dict.fromkeys(picks))[:count]


def _current_figure(title: str) -> Figure:
    fig = plt.gcf()
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)  # leaves pyplot's registry; the figure can still be saved
    return fig


def _empty_figure(text: str) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    plt.close(fig)
    return fig


def plot_coefficient_path(
    models: dict[str, TrainedModel],
    train: pd.DataFrame,
    data_contract: DataContract,
    params: DataScienceParams,
) -> Figure:
    """Logistic regression coefficients as a function of the regularisation strength C."""
    settings = load_params(params)
    cfg = settings.explanations.coefficient_path
    linear = next((m for m in models.values() if m.kind == "logistic_regression"), None)
    if linear is None:
        return _empty_figure("no logistic regression candidate")
    id_col, target = _columns(data_contract)
    x, y = _xy(train, id_col, target)
    prep = linear.estimator[:-1]  # imputation + encoding, fitted on train
    design = prep.transform(x)
    names = list(prep.get_feature_names_out())
    grid = np.logspace(np.log10(cfg.low), np.log10(cfg.high), cfg.steps)
    weight = linear.estimator[-1].class_weight
    coefs = np.array(
        [
            LogisticRegression(C=c, max_iter=2000, class_weight=weight).fit(design, y).coef_[0]
            for c in grid
        ]
    )
    top = np.argsort(-np.abs(coefs[-1]))[: cfg.top_features]
    fig, ax = plt.subplots(figsize=(8, 5))
    for j in top:
        ax.plot(grid, coefs[:, j], label=names[j])
    ax.axvline(linear.params.get("C", 1.0), color="grey", linestyle="--", label="chosen C")
    ax.set(
        xscale="log",
        xlabel="C (inverse regularisation strength)",
        ylabel="coefficient",
        title="Logistic regression: coefficient path",
    )
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    plt.close(fig)
    return fig


def register_model(
    selected: TrainedModel,
    test: pd.DataFrame,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test_metrics: dict[str, float],
    dummy_metrics: dict[str, float],
    comparison: pd.DataFrame,
    shap_importance: dict[str, float],
    data_contract: DataContract,
    params: DataScienceParams,
    outlier_bounds: dict[str, Any],
    processing_params: ProcessingParams,
    model_card_template: str,
) -> dict[str, Any]:
    """Log and register the model (alias challenger), gate it, write its card, move aliases last.

    The contract, feature declarations and outlier bounds the model was trained with are
    logged next to it (``serving/``), so the scoring API is built from exactly these.
    """
    settings = load_params(params)
    name = settings.registry.model_name
    _, target = _columns(data_contract)
    client = MlflowClient()
    tags = lineage_tags()
    mlflow.set_tags(tags)
    info = log_model(selected, test, name)
    version = str(info.registered_model_version)
    mlflow.log_dict(
        load_contract(data_contract).model_dump(mode="json"),
        f"{SERVING_ARTIFACTS}/data_contract.json",
    )
    mlflow.log_dict(
        load_processing(processing_params).model_dump(mode="json"),
        f"{SERVING_ARTIFACTS}/data_processing.json",
    )
    mlflow.log_dict(outlier_bounds, f"{SERVING_ARTIFACTS}/outlier_bounds.json")
    mlflow.log_dict(  # what the API's /model/card (the advisors' model page) shows
        {
            "test_metrics": test_metrics,
            "dummy_metrics": dummy_metrics,
            "cost": settings.cost.model_dump(mode="json"),
            "global_importance": shap_importance,
            "importance_method": "mean |SHAP value| on the held-out test rows",
        },
        f"{SERVING_ARTIFACTS}/{MODEL_CARD_ARTIFACT}",
    )
    log_reference(
        selected,
        pd.concat([validation, test], ignore_index=True),
        settings.registry.reference_rows,
        settings.random_state,
    )
    champion, champion_version, problem = score_champion(
        client, name, test, target, settings.cost, settings.fbeta_beta
    )
    decision = decide(test_metrics, champion, dummy_metrics, settings.registry.auc_tolerance)
    decision.champion_version = champion_version
    if problem:
        decision.promote = False
        decision.reasons.append(problem)
    contract = load_contract(data_contract)
    card = model_card(
        {
            "model_name": name,
            "version": version,
            "candidate": selected.name,
            "kind": selected.kind,
            "params": selected.params,
            "run_id": info.run_id,
            "git_commit": tags.get("git_commit"),
            "data_hash": tags.get("dvc_model_input_md5"),
            "threshold": selected.threshold,
            "rows": {"train": len(train), "validation": len(validation), "test": len(test)},
            "random_state": settings.random_state,
            "default_rate": float(train[target].mean()),
            "target": target,
            "id_column": contract.id_column,
            "sensitive_columns": contract.sensitive_columns,
            "selection_basis": str(comparison["selection_basis"].iloc[0])
            if "selection_basis" in comparison.columns
            else "validation",
            "features": selected.features,
            "cost": settings.cost.model_dump(),
            "test_metrics": test_metrics,
            "dummy_metrics": dummy_metrics,
            "oracle_auc": test_metrics.get("oracle_auc"),
            "comparison": comparison[[c for c in CARD_COLUMNS if c in comparison.columns]],
            "top_features": list(shap_importance.items())[:10],
            "gate_summary": decision.summary(),
        },
        model_card_template,
    )
    mlflow.log_text(card, f"model_card_v{version}.md")
    client.set_model_version_tag(name, version, "model_card", f"model_card_v{version}.md")
    record_decision(client, name, version, decision)  # the champion alias moves here, last
    return {"gate_report": decision_report(decision, name, version), "model_card": card}
