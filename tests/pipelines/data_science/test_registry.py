"""The registration nodes (log, champion, gate, card, promote) against a throw-away MLflow store."""

from __future__ import annotations

import copy
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from credit_scoring.config.data_science import Candidate, RegistryParams
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.core.encoding import category_codes
from credit_scoring.pipelines import data_science
from credit_scoring.pipelines.data_science import nodes
from credit_scoring.pipelines.data_science.nodes import (
    gate_model,
    promote_model,
    render_model_card,
    split_data,
)
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import FitContext, fit_candidate
from credit_scoring.training.registry import (
    CHALLENGER,
    CHAMPION,
    ChampionScore,
    GateDecision,
    ModelVersion,
    load_model,
    log_model,
    measure_champion,
)
from tests.pipelines.data_science.conftest import (
    LOGGED_BY_THE_CATALOG,
    REGISTRATION,
    project_datasets,
    run_in_memory,
)

NAME = "credit_scoring"
TEMPLATE = (PROJECT_ROOT / "conf/base/templates/model_card.md.j2").read_text()
DUMMY = {"business_cost": 100.0, "auc": 0.5}
GOOD = {"business_cost": 60.0, "auc": 0.80}
REST = dict.fromkeys(  # the other metrics the model card shows
    ("business_cost_per_application", "recall", "precision", "fbeta", "refusal_rate"), 0.5
)
VERSION = ModelVersion(NAME, "7", "run-7", git_commit="c0ffee", data_hash="d4t4")


@pytest.fixture(scope="module")
def splits(primary, contract) -> dict[str, pd.DataFrame]:
    return split_data(primary, contract)


@pytest.fixture(scope="module")
def models(splits, processing, science) -> dict[str, Any]:
    train = splits["train"]
    x = train.drop(columns=["client_id", "TARGET"])
    y = train["TARGET"].to_numpy()
    ctx = FitContext(processing.imputation, category_codes(x), 3, 0)
    candidates = {
        "dummy": Candidate(kind="dummy"),
        "logistic_regression": Candidate(kind="logistic_regression"),
        "lightgbm": Candidate(kind="lightgbm", fixed={"n_estimators": 80, "num_leaves": 8}),
        "weak": Candidate(
            kind="lightgbm", fixed={"n_estimators": 1, "num_leaves": 2, "min_child_samples": 400}
        ),
    }
    return {n: fit_candidate(n, c, x, y, ctx, science.cost) for n, c in candidates.items()}


@pytest.fixture
def register(mlflow_store, tmp_path, models, splits, contract, processing, science):
    """Run the pipeline's registration nodes for ``model``, in one MLflow run."""
    pipeline = data_science.create_pipeline().only_nodes(*REGISTRATION)
    test = splits["test"]
    y = test["TARGET"].to_numpy()

    def metrics(model) -> dict[str, float]:
        scores = model.predict_proba(test)
        return classification_metrics(
            y, scores, model.decide(scores), science.cost, science.fbeta_beta
        )

    def run(model) -> dict[str, Any]:
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
        inputs = {
            "selected_model": model,
            "train_set": splits["train"],
            "validation_set": splits["validation"],
            "test_set": test,
            "test_metrics": metrics(model),
            "dummy_test_metrics": metrics(models["dummy"]),
            "model_comparison": comparison,
            "shap_importance": {"EXT_SOURCE_3": 0.1},
            "outlier_bounds": {},
            "params:data_contract": contract,
            "params:data_processing": processing,
            "params:data_science": science,
            "model_card_template": TEMPLATE,
        }
        logged = project_datasets(LOGGED_BY_THE_CATALOG, tmp_path / model.name)
        with mlflow.start_run():
            return run_in_memory(pipeline, inputs, logged)

    return run


def _champion() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, CHAMPION).version)


NO_CHAMPION = ChampionScore()


def _gate(science, challenger, champion=NO_CHAMPION, tolerance=0.005) -> GateDecision:
    params = science.model_copy(update={"registry": RegistryParams(auc_tolerance=tolerance)})
    return gate_model(challenger, DUMMY, champion, VERSION, params)["decision"]


# --- gate (a pure function of the metrics) ------------------------------------------------


def test_gate_rules(science):
    def promote(challenger, champion=None):
        score = ChampionScore(champion, "1") if champion else ChampionScore()
        return _gate(science, challenger, score).promote

    assert promote(GOOD)  # beats the dummy, no champion yet
    assert not promote({"business_cost": 100.0, "auc": 0.9})  # the dummy's cost is not beaten
    assert not promote({"business_cost": 60.0, "auc": 0.85}, GOOD)  # not cheaper
    assert not promote({"business_cost": 61.0, "auc": 0.85}, GOOD)
    assert promote({"business_cost": 59.0, "auc": 0.796}, GOOD)  # AUC within the tolerance
    assert promote({"business_cost": 59.0, "auc": 0.795}, GOOD)  # at the tolerance
    assert not promote({"business_cost": 59.0, "auc": 0.79}, GOOD)  # beyond it


def test_the_dummy_is_never_champion(science):
    decision = _gate(science, dict(DUMMY))
    assert not decision.promote
    assert decision.reasons == ["cost 100 does not beat dummy 100", "no champion yet"]


def test_the_tolerance_comes_from_the_parameters(science):
    champion = ChampionScore(GOOD, "1")
    cheaper_but_worse = {"business_cost": 59.0, "auc": 0.78}
    assert not _gate(science, cheaper_but_worse, champion, 0.005).promote
    decision = _gate(science, cheaper_but_worse, champion, 0.05)
    assert decision.promote and "AUC 0.7800 within 0.05 of champion 0.8000" in decision.reasons


def test_a_champion_that_cannot_be_compared_blocks_the_promotion(science):
    problem = "champion v3 could not score the new test rows (boom) - promote by hand"
    decision = _gate(science, GOOD, ChampionScore(version="3", problem=problem))
    assert not decision.promote and decision.reasons[-1] == problem
    assert decision.champion is None and decision.champion_version == "3"


def test_the_gate_is_pure_and_reports_its_decision(science):
    challenger, champion = {"business_cost": 59.0, "auc": 0.81}, ChampionScore(GOOD, "1")
    kept = copy.deepcopy((challenger, champion))
    params = science.model_copy(update={"registry": RegistryParams(auc_tolerance=0.005)})
    out = gate_model(challenger, DUMMY, champion, VERSION, params)
    assert (challenger, champion) == kept
    assert out == gate_model(challenger, DUMMY, champion, VERSION, params)
    report, decision = out["report"], out["decision"]
    assert report["promote"] is decision.promote is True
    assert (report["model_name"], report["version"], report["champion_version"]) == (
        NAME,
        "7",
        "1",
    )
    assert report["summary"].startswith("PROMOTED to champion: cost 59 < dummy 100; ")
    assert list(report) == [
        "promote",
        "reasons",
        "challenger",
        "champion",
        "dummy",
        "champion_version",
        "details",
        "model_name",
        "version",
        "summary",
    ]


# --- card ---------------------------------------------------------------------------------


def test_the_card_shows_the_version_the_gate_and_the_metrics(models, splits, contract, science):
    model = models["lightgbm"]
    decision = _gate(science, {**GOOD, **REST})
    comparison = pd.DataFrame([{"candidate": "lightgbm", "auc": 0.8, "fit_seconds": 1.0}])
    out = render_model_card(
        model,
        VERSION,
        decision,
        comparison,
        {"EXT_SOURCE_3": 0.25},
        splits["train"],
        splits["validation"],
        splits["test"],
        contract,
        science,
        TEMPLATE,
    )
    card = out["card"]
    assert card.startswith("# Model card — `credit_scoring` version 7")
    assert "MLflow run: `run-7`; git commit `c0ffee`; data `d4t4`" in card
    assert decision.summary() in card and "1. `EXT_SOURCE_3` (0.2500)" in card
    assert f"Training rows: {len(splits['train'])}, validation:" in card
    assert "| candidate | auc |" in card and "fit_seconds" not in card  # the card's columns
    assert out["serving_card"] == {
        "test_metrics": decision.challenger,
        "dummy_metrics": DUMMY,
        "cost": science.cost.model_dump(mode="json"),
        "global_importance": {"EXT_SOURCE_3": 0.25},
        "importance_method": "mean |SHAP value| on the held-out test rows",
    }


# --- promote (moves the aliases, nothing else decides) -------------------------------------


def test_promote_moves_the_champion_only_on_a_promote_decision(mlflow_store, models, splits):
    client = MlflowClient()

    def register_version(promote: bool) -> str:
        with mlflow.start_run():
            info = log_model(models["dummy"], splits["test"], NAME)
            version = ModelVersion(NAME, str(info.registered_model_version), info.run_id)
            decision = GateDecision(promote, ["because"], GOOD, None, DUMMY)
            promote_model(version, decision, f"card of v{version.version}")
        return version.version

    first = register_version(False)
    assert client.get_registered_model(NAME).aliases == {CHALLENGER: int(first)}
    assert client.get_model_version(NAME, first).tags["gate.decision"] == "rejected"
    second = register_version(True)
    assert client.get_registered_model(NAME).aliases == {
        CHALLENGER: int(second),
        CHAMPION: int(second),
    }
    third = register_version(False)
    assert _champion() == second
    assert client.get_model_version(NAME, third).aliases == [CHALLENGER]
    tags = client.get_model_version(NAME, third).tags
    assert tags["model_card"] == f"model_card_v{third}.md" and tags["gate.reasons"] == "because"
    run_id = client.get_model_version(NAME, third).run_id
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/model_card_v{third}.md")
    assert text == f"card of v{third}"


# --- the registration nodes together ------------------------------------------------------


def test_first_model_champion_then_worse_challenger_stays_challenger(register, models):
    first = register(models["lightgbm"])
    assert first["gate_report"]["promote"] and _champion() == "1"
    second = register(models["weak"])
    report = second["gate_report"]
    assert not report["promote"] and report["champion_version"] == "1"
    assert any("not below champion" in r for r in report["reasons"])
    assert _champion() == "1"
    version = MlflowClient().get_model_version(NAME, "2")
    assert version.aliases == ["challenger"] and version.tags["gate.decision"] == "rejected"
    assert "version 2" in second["model_card"] and "NOT promoted" in second["model_card"]


def test_dummy_is_never_champion(register, models):
    report = register(models["dummy"])["gate_report"]
    assert not report["promote"] and any("does not beat dummy" in r for r in report["reasons"])
    assert MlflowClient().get_registered_model(NAME).aliases.get(CHAMPION) is None


def test_a_crash_mid_registration_leaves_the_champion(register, models, monkeypatch):
    register(models["weak"])
    assert _champion() == "1"

    def broken_card(facts, template):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nodes, "model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        register(models["lightgbm"])  # better, but the run dies
    assert _champion() == "1"
    assert MlflowClient().get_model_version(NAME, "2").aliases == []


@pytest.mark.parametrize("name", ["logistic_regression", "lightgbm"])
def test_logged_model_reloads_identically(register, models, splits, name):
    register(models[name])
    loaded = load_model(f"models:/{NAME}/1")
    test = splits["test"]
    np.testing.assert_allclose(
        loaded.predict_proba(test), models[name].predict_proba(test), atol=1e-9
    )
    assert loaded.threshold == models[name].threshold and loaded.kind == models[name].kind
    tags = mlflow.get_run(MlflowClient().get_model_version(NAME, "1").run_id).data.tags
    assert len(tags["git_commit"]) == 40 and "dvc_model_input_md5" in tags


def test_a_champion_that_cannot_score_the_new_rows_gets_one_sentence(
    register, models, splits, science
):
    """A fork changed the data: the gate says why in one sentence, not a pandas error dump."""
    register(models["lightgbm"])
    gone = models["lightgbm"].features[:4]
    other = splits["test"].drop(columns=gone)
    score = measure_champion(
        MlflowClient(), NAME, other, "TARGET", science.cost, science.fbeta_beta
    )
    assert score.metrics is None and score.version == "1"
    problem = score.problem
    assert problem is not None and "\n" not in problem and len(problem) < 300
    assert "other columns" in problem and gone[0] in problem and "by hand" in problem
    broken = splits["test"].assign(**{gone[0]: "not a number"})
    problem = measure_champion(
        MlflowClient(), NAME, broken, "TARGET", science.cost, science.fbeta_beta
    ).problem
    assert problem is None or ("\n" not in problem and "could not score" in problem)
