"""The scorer with other champions than LightGBM: a scikit-learn model (logistic regression)
and an XGBoost booster; scores and SHAP."""

from __future__ import annotations

import math

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest

from credit_scoring.config.data_science import Candidate, CostParams
from credit_scoring.core.encoding import category_codes
from credit_scoring.core.spec import (
    BACKGROUND_FILE,
    MODEL_DIR,
    ServingSpec,
    json_records,
    save_background,
)
from credit_scoring.serving.scorer import Scorer
from credit_scoring.training.modeling import FitContext, fit_candidate
from credit_scoring.training.registry import SKOPS_TRUSTED_TYPES

# Uses the trained project (a real `kedro run`): not in `make test-fast`.
pytestmark = pytest.mark.integration


def test_a_logistic_regression_champion_scores_and_explains(
    tmp_path, primary, client_features, service_module, parameters
):
    lightgbm_spec = service_module.SPEC
    target = lightgbm_spec.contract.target.column
    x = primary[lightgbm_spec.features]
    y = primary[target].to_numpy()
    declared = {n: c.allowed for n, c in lightgbm_spec.contract.columns.items() if c.allowed}
    ctx = FitContext(groups=[], categories=category_codes(x, declared), folds=2, random_state=0)
    from credit_scoring.core.processing import load_processing

    ctx = FitContext(
        groups=load_processing(parameters["data_processing"]).imputation,
        categories=ctx.categories,
        folds=2,
        random_state=0,
    )
    candidate = Candidate(kind="logistic_regression", class_weight="balanced")
    model = fit_candidate("logistic_regression", candidate, x, y, ctx, CostParams())

    mlflow.sklearn.save_model(
        model.estimator,
        tmp_path / MODEL_DIR,
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    save_background(x.sample(60, random_state=1), tmp_path / BACKGROUND_FILE)
    spec = ServingSpec.model_validate(
        {
            **lightgbm_spec.model_dump(),
            "candidate": "logistic_regression",
            "kind": "logistic_regression",
            "threshold": model.threshold,
            "categories": {},
        }
    )
    scorer = Scorer(spec, tmp_path)

    ids = pd.Index(client_features["client_id"]).intersection(primary["client_id"])[:40]
    records = json_records(
        client_features.set_index("client_id").loc[ids].reset_index(), spec.request_columns()
    )
    expected = model.predict_proba(primary.set_index("client_id").loc[ids].reset_index())
    np.testing.assert_allclose(scorer.probabilities(records), expected, rtol=0, atol=1e-9)
    assert scorer.probability(records[0]) == pytest.approx(expected[0], abs=1e-12)

    explanation = scorer.explain(records[0])
    assert explanation.units == "probability"
    total = explanation.base_value + sum(c.shap_value for c in explanation.contributions)
    assert total == pytest.approx(explanation.probability, abs=1e-6)  # SHAP efficiency
    assert scorer.reasons(explanation)


def _xgboost_scorer(model, spec, folder):
    """The scorer of an XGBoost champion saved as ``mlflow.xgboost`` saves it (UBJ)."""
    import mlflow.xgboost

    mlflow.xgboost.save_model(model.estimator.booster_, folder / MODEL_DIR, model_format="ubj")
    spec = ServingSpec.model_validate(
        {
            **spec.model_dump(),
            "candidate": model.name,
            "kind": "xgboost",
            "threshold": model.threshold,
            "categories": model.categories,
        }
    )
    return Scorer(spec, folder)


def test_an_xgboost_champion_scores_and_explains_with_its_own_treeshap(
    tmp_path, primary, client_features, service_module, xgboost_trained
):
    import xgboost as xgb

    model = xgboost_trained
    scorer = _xgboost_scorer(model, service_module.SPEC, tmp_path)
    booster = model.estimator.booster_
    assert not list((tmp_path / MODEL_DIR).glob("*.pkl"))  # UBJ, no pickled code
    assert scorer.booster.feature_types == booster.feature_types  # categories travel with it

    ids = pd.Index(client_features["client_id"]).intersection(primary["client_id"])[:40]
    records = json_records(
        client_features.set_index("client_id").loc[ids].reset_index(), scorer.spec.request_columns()
    )
    rows = primary.set_index("client_id").loc[ids].reset_index()
    encoded = model.model_input(rows).to_numpy(dtype=float)
    matrix = xgb.DMatrix(
        encoded,
        feature_names=booster.feature_names,
        feature_types=booster.feature_types,
        enable_categorical=True,
    )
    expected = booster.predict(matrix).astype(float)
    np.testing.assert_allclose(scorer.probabilities(records), expected, rtol=0, atol=1e-9)
    assert scorer.probability(records[0]) == pytest.approx(expected[0], abs=1e-9)
    # the batch path (one matrix, the booster's threads): the same scores
    table = pd.DataFrame(records)
    np.testing.assert_allclose(
        scorer.probabilities_frame(table, num_threads=2), expected, rtol=0, atol=1e-9
    )

    margins = booster.predict(matrix, output_margin=True)
    for i in range(3):
        explanation = scorer.explain(records[i])
        assert explanation.units == "log_odds"
        assert explanation.probability == pytest.approx(expected[i], abs=1e-9)
        total = explanation.base_value + sum(c.shap_value for c in explanation.contributions)
        assert total == pytest.approx(float(margins[i]), abs=1e-5)  # SHAP efficiency, float32
        logit = math.log(explanation.probability / (1 - explanation.probability))
        assert total == pytest.approx(logit, abs=1e-4)
        shap_sizes = [abs(c.shap_value) for c in explanation.contributions]
        assert shap_sizes == sorted(shap_sizes, reverse=True)
    assert scorer.reasons(scorer.explain(records[0]))


def test_an_xgboost_booster_with_other_features_is_refused(
    tmp_path, service_module, xgboost_trained
):
    spec = service_module.SPEC.model_copy(update={"features": service_module.SPEC.features[::-1]})
    with pytest.raises(ValueError, match=r"features differ from serving_spec\.json"):
        _xgboost_scorer(xgboost_trained, spec, tmp_path)
