"""Training, selection, evaluation, explanation and registration of the scoring model.

The nodes receive typed configuration (Kedro validates ``params:`` inputs against the type
hints): ``DataContract``, ``ProcessingParams``, ``DataScienceParams``.
"""

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

from credit_scoring.config.data_science import PARAMS_FILE, DataScienceParams
from credit_scoring.core import frames
from credit_scoring.core.contract import DataContract
from credit_scoring.core.encoding import category_codes, nan_for_missing
from credit_scoring.core.errors import ContractError
from credit_scoring.core.lineage import lineage_tags
from credit_scoring.core.processing import SPLIT_COLUMN, ProcessingParams
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import (
    FitContext,
    TrainedModel,
    directional_violations,
    fit_candidate,
)
from credit_scoring.training.privacy import pseudonymise_series
from credit_scoring.training.registry import (
    ChampionScore,
    GateDecision,
    ModelVersion,
    decide,
    decision_report,
    log_model,
    measure_champion,
    record_decision,
    reference_sample,
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


def _columns(contract: DataContract) -> tuple[str, str]:
    if contract.target is None:
        raise ContractError("Training needs data_contract.target (the label column).")
    return contract.pseudonymised_id_column, contract.target.column


def _xy(frame: pd.DataFrame, id_col: str, target: str) -> tuple[pd.DataFrame, np.ndarray]:
    return nan_for_missing(frame.drop(columns=[id_col, target])), frame[target].to_numpy()


def split_data(primary: Any, data_contract: DataContract) -> dict[str, pd.DataFrame]:
    """The train / validation / test rows, as assigned by data_processing (``split`` column).

    The models train in pandas: a table from the Spark engine is collected here, in its
    source's row order, so both engines give the models the same rows in the same order.
    """
    _columns(data_contract)
    primary = frames.to_pandas(primary)
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
    leakage = params.leakage
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
    suspects = {c: a for c, a in aucs.items() if a > leakage.max_single_feature_auc}
    report = {
        "max_single_feature_auc": leakage.max_single_feature_auc,
        "suspects": suspects,
        "feature_auc": dict(sorted(aucs.items(), key=lambda kv: -kv[1])),
    }
    if suspects:
        message = (
            f"Possible target leakage: {suspects} predict the target alone above "
            f"data_science.leakage.max_single_feature_auc={leakage.max_single_feature_auc} "
            f"({PARAMS_FILE}). Remove the feature(s) from the data "
            f"contract, or set leakage.action: warn if this is expected."
        )
        if leakage.action == "fail":
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
    id_col, target = _columns(data_contract)
    x, y = _xy(train, id_col, target)
    declared = {c: spec.allowed for c, spec in data_contract.columns.items() if spec.allowed}
    ctx = FitContext(
        groups=list(processing_params.imputation),
        categories=category_codes(x, declared),
        folds=params.cv_folds,
        random_state=params.random_state,
        monotone_increasing=tuple(params.monotone_increasing),
    )
    return {
        name: fit_candidate(name, candidate, x, y, ctx, params.cost)
        for name, candidate in params.candidates.items()
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
    _, target = _columns(data_contract)
    y = validation[target].to_numpy()
    rows = []
    for name, model in models.items():
        scores, ms_per_1000 = _timed_scores(model, validation)
        metrics = classification_metrics(
            y, scores, model.decide(scores), params.cost, params.fbeta_beta
        )
        violations = directional_violations(model, validation, params.monotone_increasing)
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
    basis = _selection_basis(params, models, len(validation))
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
            f"{params.monotone_increasing} rises); see the comparison:\n{comparison.to_string()}"
        )
    best = str(eligible.iloc[0]["candidate"])
    logger.info("selected %s (%s):\n%s", best, basis, comparison.to_string(index=False))
    return {"selected": models[best], "comparison": comparison.reset_index(drop=True)}


def _selection_basis(
    params: DataScienceParams, models: dict[str, TrainedModel], validation_rows: int
) -> str:
    mode = params.selection.mode
    if mode != "auto":
        return mode
    rows = max((m.train_rows for m in models.values()), default=0) + validation_rows
    return (
        "cross_validation" if rows < params.selection.cross_validation_below_rows else "validation"
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
    _, target = _columns(data_contract)
    y = test[target].to_numpy()
    scores = selected.predict_proba(test)
    refuse = selected.decide(scores)
    metrics = classification_metrics(y, scores, refuse, params.cost, params.fbeta_beta)
    dummy = _dummy(models)
    dummy_scores = dummy.predict_proba(test)
    dummy_metrics = classification_metrics(
        y, dummy_scores, dummy.decide(dummy_scores), params.cost, params.fbeta_beta
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
    test: pd.DataFrame, truth: pd.DataFrame | None, key: str, contract: DataContract
) -> float | None:
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
    cfg = params.explanations
    id_col, target = _columns(data_contract)
    sample = test.sample(min(cfg.sample_size, len(test)), random_state=params.random_state)
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
        random_state=params.random_state,
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
    """SHAP values of the score: exact TreeSHAP for LightGBM and XGBoost (XGBoost's own, in
    log-odds, as the API gives them), exact linear SHAP for the logistic regression (in its
    design space: scaled numbers and one-hot categories)."""
    if model.kind == "dummy":
        return None
    if model.kind == "xgboost":
        contributions = model.estimator.contributions(model.model_input(sample))
        return shap.Explanation(
            values=contributions[:, :-1],
            base_values=contributions[:, -1],
            data=sample[model.features].to_numpy(),  # show raw values, not codes
            feature_names=model.features,
        )
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
    cfg = params.explanations.coefficient_path
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


# --- registration: log, measure the champion, gate, card, promote (aliases move last) -----


def log_model_version(
    selected: TrainedModel,
    test: pd.DataFrame,
    validation: pd.DataFrame,
    outlier_bounds: dict[str, Any],
    data_contract: DataContract,
    processing_params: ProcessingParams,
    params: DataScienceParams,
) -> dict[str, Any]:
    """Log the selected model in the active MLflow run and register it as a new version;
    return the version and the files the API and the monitoring are built from.

    The model is logged here, in code: its flavour depends on the winner (LightGBM's native
    format or scikit-learn's skops), and the registered version it gets is an output that no
    catalog dataset returns. The returned contract, processing parameters, outlier bounds
    (``serving/``) and monitoring reference (``monitoring/reference.parquet``) are logged
    next to it by their catalog entries (``MlflowArtifactDataset``).
    """
    tags = lineage_tags()
    mlflow.set_tags(tags)
    info = log_model(selected, test, params.registry.model_name)
    held_out = pd.concat([validation, test], ignore_index=True)
    return {
        "version": ModelVersion(
            name=params.registry.model_name,
            version=str(info.registered_model_version),
            run_id=info.run_id,
            git_commit=tags.get("git_commit"),
            data_hash=tags.get("dvc_model_input_md5"),
        ),
        "reference": reference_sample(
            selected, held_out, params.registry.reference_rows, params.random_state
        ),
        "data_contract": data_contract.model_dump(mode="json"),
        "data_processing": processing_params.model_dump(mode="json"),
        "outlier_bounds": outlier_bounds,
    }


def score_champion(
    test: pd.DataFrame, data_contract: DataContract, params: DataScienceParams
) -> ChampionScore:
    """The current champion's metrics on the new test rows (read from the registry): none
    without a champion, a one-sentence problem when the two cannot be compared."""
    _, target = _columns(data_contract)
    return measure_champion(
        MlflowClient(), params.registry.model_name, test, target, params.cost, params.fbeta_beta
    )


def gate_model(
    test_metrics: dict[str, float],
    dummy_metrics: dict[str, float],
    champion: ChampionScore,
    model_version: ModelVersion,
    params: DataScienceParams,
) -> dict[str, Any]:
    """The registry gate's decision on the new version (pure), and its report."""
    decision = decide(test_metrics, champion, dummy_metrics, params.registry.auc_tolerance)
    report = decision_report(decision, model_version.name, model_version.version)
    return {"decision": decision, "report": report}


def render_model_card(
    selected: TrainedModel,
    model_version: ModelVersion,
    decision: GateDecision,
    comparison: pd.DataFrame,
    shap_importance: dict[str, float],
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    data_contract: DataContract,
    params: DataScienceParams,
    model_card_template: str,
) -> dict[str, Any]:
    """The model card of the new version: Markdown for people (from the template), and the
    JSON the API's /model/card serves to advisors. The metrics are those the gate judged."""
    _, target = _columns(data_contract)
    card = model_card(
        {
            "model_name": model_version.name,
            "version": model_version.version,
            "candidate": selected.name,
            "kind": selected.kind,
            "params": selected.params,
            "run_id": model_version.run_id,
            "git_commit": model_version.git_commit,
            "data_hash": model_version.data_hash,
            "threshold": selected.threshold,
            "rows": {"train": len(train), "validation": len(validation), "test": len(test)},
            "random_state": params.random_state,
            "default_rate": float(train[target].mean()),
            "target": target,
            "id_column": data_contract.id_column,
            "sensitive_columns": data_contract.sensitive_columns,
            "selection_basis": str(comparison["selection_basis"].iloc[0])
            if "selection_basis" in comparison.columns
            else "validation",
            "features": selected.features,
            "cost": params.cost.model_dump(),
            "test_metrics": decision.challenger,
            "dummy_metrics": decision.dummy,
            "oracle_auc": decision.challenger.get("oracle_auc"),
            "comparison": comparison[[c for c in CARD_COLUMNS if c in comparison.columns]],
            "top_features": list(shap_importance.items())[:10],
            "gate_summary": decision.summary(),
        },
        model_card_template,
    )
    serving_card = {
        "test_metrics": decision.challenger,
        "dummy_metrics": decision.dummy,
        "cost": params.cost.model_dump(mode="json"),
        "global_importance": shap_importance,
        "importance_method": "mean |SHAP value| on the held-out test rows",
    }
    return {"card": card, "serving_card": serving_card}


def promote_model(model_version: ModelVersion, decision: GateDecision, model_card: str) -> None:
    """Record the gate's decision on the version, then move the aliases: ``challenger``
    always, ``champion`` only when the gate promotes it.

    Its inputs make it the last registration step: a run that dies before it leaves the
    champion alias where it was. The card is logged here, in code, because its artifact name
    carries the version number (``model_card_v<N>.md``, named in the version's tag), which a
    catalog entry cannot.
    """
    name, version = model_version.name, model_version.version
    client = MlflowClient()
    card_file = f"model_card_v{version}.md"
    mlflow.log_text(model_card, card_file)
    client.set_model_version_tag(name, version, "model_card", card_file)
    record_decision(client, name, version, decision)
