"""The XGBoost candidate trained across Spark executors (`conf/spark/`): the same folds,
threshold, monotone constraints, SHAP and registry as the other candidates."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from credit_scoring.config.data_science import Candidate, DataScienceParams
from credit_scoring.core.encoding import category_codes
from credit_scoring.core.errors import ContractError
from credit_scoring.engines.spark import SparkUnavailable, task_slots
from credit_scoring.pipelines.data_science.nodes import _shap_values, split_data
from credit_scoring.training.boosters import XGBoostClassifier
from credit_scoring.training.modeling import FitContext, directional_violations, fit_candidate
from credit_scoring.training.registry import log_model

SMALL = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.15}


def _spark_candidate(num_workers: int = 2) -> Candidate:
    return Candidate(kind="xgboost", spark={"num_workers": num_workers}, fixed=SMALL)


@pytest.fixture(scope="module")
def split(primary, contract):
    return split_data(primary, contract)


@pytest.fixture(scope="module")
def train_xy(split):
    train = split["train"]
    return train.drop(columns=["client_id", "TARGET"]), train["TARGET"].to_numpy()


@pytest.fixture(scope="module")
def ctx(train_xy, processing, science) -> FitContext:
    x, _ = train_xy
    # Two folds: three distributed fits (two folds, the refit) keep the module in seconds.
    return FitContext(
        processing.imputation, category_codes(x), 2, 0, tuple(science.monotone_increasing)
    )


@pytest.fixture(scope="module")
def spark_model(spark, train_xy, ctx, science):
    x, y = train_xy
    return fit_candidate("xgboost_spark", _spark_candidate(), x, y, ctx, science.cost)


# --- configuration --------------------------------------------------------------------


def test_the_spark_candidate_is_declared_only_in_the_spark_environment(parameters):
    from credit_scoring.config.loader import project_parameters

    spark_params = DataScienceParams.model_validate(project_parameters(env="spark")["data_science"])
    assert spark_params.candidates["xgboost_spark"].spark is not None
    assert {n for n, c in spark_params.candidates.items() if c.spark} == {"xgboost_spark"}
    base = DataScienceParams.model_validate(parameters["data_science"])
    assert not any(c.spark or c.kind == "xgboost" for c in base.candidates.values())


def test_spark_training_is_refused_for_other_kinds_and_typos():
    with pytest.raises(ValidationError, match=r"`spark` trains XGBoost.*use kind: xgboost"):
        Candidate(kind="lightgbm", spark={"num_workers": 2})
    with pytest.raises(ValidationError, match="num_worker"):
        Candidate(kind="xgboost", spark={"num_worker": 2})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Candidate(kind="xgboost", spark={"num_workers": 0})


def test_without_a_session_the_candidate_names_the_spark_environment(
    monkeypatch, train_xy, ctx, science
):
    from pyspark.sql import SparkSession

    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    x, y = train_xy
    with pytest.raises(SparkUnavailable, match=r"xgboost_spark.*kedro run --env spark"):
        fit_candidate("xgboost_spark", _spark_candidate(), x, y, ctx, science.cost)


# --- on the Spark session (local[2]) ---------------------------------------------------


def test_more_workers_than_task_slots_fails_at_once_instead_of_hanging(
    spark, train_xy, ctx, science
):
    x, y = train_xy
    assert task_slots(spark) == 2  # local[2]
    started = time.monotonic()
    with pytest.raises(
        ContractError, match=r"candidates\.xgboost_spark\.spark\.num_workers = 3.*only 2 task"
    ):
        fit_candidate("xgboost_spark", _spark_candidate(3), x, y, ctx, science.cost)
    with pytest.raises(ContractError, match=r"num_workers <= 2"):  # the estimator checks too
        XGBoostClassifier(SMALL, [], num_workers=3).fit(x.select_dtypes("number"), y)
    assert time.monotonic() - started < 5


def test_the_spark_candidate_is_a_scored_thresholded_native_booster(spark_model, split, ctx):
    model = spark_model
    assert model.kind == "xgboost" and model.categories == ctx.categories
    booster = model.estimator.booster_
    assert booster.feature_names == model.features
    categorical = {
        f for f, t in zip(booster.feature_names, booster.feature_types, strict=True) if t == "c"
    }
    assert categorical == set(ctx.categories)  # the category codes, as LightGBM reads them
    assert 0.0 < model.threshold < 1.0 and model.cv_auc > 0.7  # out-of-fold, 2 folds
    test = split["test"]
    auc = roc_auc_score(test["TARGET"], model.predict_proba(test))
    assert auc > 0.7


def test_the_spark_candidate_respects_the_monotone_constraints(spark_model, split, science):
    increasing = science.monotone_increasing
    assert directional_violations(spark_model, split["test"], increasing) == dict.fromkeys(
        increasing, 0
    )


def test_its_shap_values_are_exact_and_sum_to_the_log_odds(spark_model, split):
    sample = split["test"].head(50)
    explanation = _shap_values(spark_model, split["train"], sample)
    assert explanation is not None and explanation.values.shape == (50, len(spark_model.features))
    margin = explanation.values.sum(axis=1) + explanation.base_values
    probability = spark_model.predict_proba(sample)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), probability, atol=1e-5)


def test_it_is_logged_in_xgboosts_format_and_loads_back(spark_model, split, mlflow_store):
    from credit_scoring.training.registry import load_model

    test = split["test"]
    with mlflow.start_run() as run:
        info = log_model(spark_model, test, "credit_scoring")
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    files = {p.name for p in local.rglob("*") if p.is_file()}
    assert "model.ubj" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".cloudpickle"))]
    assert "xgboost" in (local / "MLmodel").read_text()
    loaded = load_model(f"models:/credit_scoring/{info.registered_model_version}")
    assert (loaded.kind, loaded.features, loaded.categories, loaded.threshold) == (
        "xgboost",
        spark_model.features,
        spark_model.categories,
        spark_model.threshold,
    )
    np.testing.assert_array_equal(loaded.predict_proba(test), spark_model.predict_proba(test))
    assert run.info.run_id == info.run_id
