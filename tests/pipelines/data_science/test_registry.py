"""The registry gate against a throw-away MLflow store."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from credit_scoring.config.data_science import Candidate, load_params
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.core.encoding import category_codes
from credit_scoring.pipelines.data_science import nodes
from credit_scoring.pipelines.data_science.nodes import register_model, split_data
from credit_scoring.training.imputation import load_groups
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import FitContext, fit_candidate
from credit_scoring.training.registry import CHAMPION, decide, load_model, score_champion

NAME = "credit_scoring"


@pytest.fixture(scope="module")
def splits(primary, parameters) -> dict[str, pd.DataFrame]:
    return split_data(primary, parameters["data_contract"])


@pytest.fixture(scope="module")
def models(splits, parameters) -> dict[str, Any]:
    settings = load_params(parameters["data_science"])
    train = splits["train"]
    x = train.drop(columns=["client_id", "TARGET"])
    y = train["TARGET"].to_numpy()
    ctx = FitContext(
        load_groups(parameters["data_processing"]["imputation"]), category_codes(x), 3, 0
    )
    candidates = {
        "dummy": Candidate(kind="dummy"),
        "logistic_regression": Candidate(kind="logistic_regression"),
        "lightgbm": Candidate(kind="lightgbm", fixed={"n_estimators": 80, "num_leaves": 8}),
        "weak": Candidate(
            kind="lightgbm", fixed={"n_estimators": 1, "num_leaves": 2, "min_child_samples": 400}
        ),
    }
    return {n: fit_candidate(n, c, x, y, ctx, settings.cost)[0] for n, c in candidates.items()}


def _register(model, models, splits, parameters) -> dict[str, Any]:
    settings = load_params(parameters["data_science"])
    test = splits["test"]
    y = test["TARGET"].to_numpy()

    def metrics(m):
        scores = m.predict_proba(test)
        return classification_metrics(
            y, scores, m.decide(scores), settings.cost, settings.fbeta_beta
        )

    comparison = pd.DataFrame(
        [
            {
                "candidate": model.name,
                "auc": 0.0,
                "business_cost": 0.0,
                "recall": 0.0,
                "precision": 0.0,
                "fbeta": 0.0,
                "directional_violations": 0,
                "threshold": model.threshold,
            }
        ]
    )
    with mlflow.start_run():
        return register_model(
            model,
            test,
            splits["train"],
            splits["validation"],
            metrics(model),
            metrics(models["dummy"]),
            comparison,
            {"EXT_SOURCE_3": 0.1},
            parameters["data_contract"],
            parameters["data_science"],
            {},
            parameters["data_processing"],
            (PROJECT_ROOT / "conf/base/templates/model_card.md.j2").read_text(),
        )


def _champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, CHAMPION).version)


def test_decide_rules():
    dummy = {"business_cost": 100.0, "auc": 0.5}
    good = {"business_cost": 60.0, "auc": 0.80}
    assert decide(good, None, dummy, 0.005).promote
    assert not decide({"business_cost": 100.0, "auc": 0.9}, None, dummy, 0.005).promote
    assert not decide({"business_cost": 61.0, "auc": 0.85}, good, dummy, 0.005).promote
    assert decide({"business_cost": 59.0, "auc": 0.796}, good, dummy, 0.005).promote
    assert not decide({"business_cost": 59.0, "auc": 0.79}, good, dummy, 0.005).promote


def test_first_model_champion_then_worse_challenger_stays_challenger(
    mlflow_store, models, splits, parameters
):
    first = _register(models["lightgbm"], models, splits, parameters)
    assert first["gate_report"]["promote"] and _champion() == "1"
    second = _register(models["weak"], models, splits, parameters)
    report = second["gate_report"]
    assert not report["promote"] and report["champion_version"] == "1"
    assert any("not below champion" in r for r in report["reasons"])
    assert _champion() == "1"
    version = MlflowClient().get_model_version(NAME, "2")
    assert version.aliases == ["challenger"] and version.tags["gate.decision"] == "rejected"
    assert "version 2" in second["model_card"] and "NOT promoted" in second["model_card"]


def test_dummy_is_never_champion(mlflow_store, models, splits, parameters):
    report = _register(models["dummy"], models, splits, parameters)["gate_report"]
    assert not report["promote"] and any("does not beat dummy" in r for r in report["reasons"])
    assert MlflowClient().get_registered_model(NAME).aliases.get(CHAMPION) is None


def test_a_crash_mid_registration_leaves_the_champion(
    mlflow_store, models, splits, parameters, monkeypatch
):
    _register(models["weak"], models, splits, parameters)
    assert _champion() == "1"

    def broken_card(facts, template):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nodes, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        _register(models["lightgbm"], models, splits, parameters)  # better, but the run dies
    assert _champion() == "1"
    assert MlflowClient().get_model_version(NAME, "2").aliases == []


@pytest.mark.parametrize("name", ["logistic_regression", "lightgbm"])
def test_logged_model_reloads_identically(mlflow_store, models, splits, parameters, name):
    _register(models[name], models, splits, parameters)
    loaded = load_model(f"models:/{NAME}/1")
    test = splits["test"]
    np.testing.assert_allclose(
        loaded.predict_proba(test), models[name].predict_proba(test), atol=1e-9
    )
    assert loaded.threshold == models[name].threshold and loaded.kind == models[name].kind
    tags = mlflow.get_run(MlflowClient().get_model_version(NAME, "1").run_id).data.tags
    assert len(tags["git_commit"]) == 40 and "dvc_model_input_md5" in tags


def test_a_champion_that_cannot_score_the_new_rows_gets_one_sentence(
    mlflow_store, models, splits, parameters
):
    """A fork changed the data: the gate says why in one sentence, not a pandas error dump."""
    _register(models["lightgbm"], models, splits, parameters)
    settings = load_params(parameters["data_science"])
    gone = models["lightgbm"].features[:4]
    other = splits["test"].drop(columns=gone)
    metrics, version, problem = score_champion(
        MlflowClient(), NAME, other, "TARGET", settings.cost, settings.fbeta_beta
    )
    assert metrics is None and version == "1"
    assert "\n" not in problem and len(problem) < 300
    assert "other columns" in problem and gone[0] in problem and "by hand" in problem
    broken = splits["test"].assign(**{gone[0]: "not a number"})
    _, _, problem = score_champion(
        MlflowClient(), NAME, broken, "TARGET", settings.cost, settings.fbeta_beta
    )
    assert problem is None or ("\n" not in problem and "could not score" in problem)
