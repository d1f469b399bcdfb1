"""The data_science pipeline on a small dataset, with a throw-away MLflow store."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.core.spec import MODEL_CARD_ARTIFACT, REFERENCE_ARTIFACT, SERVING_ARTIFACTS
from credit_scoring.pipelines import data_science
from credit_scoring.training.registry import CHALLENGER, CHAMPION, load_model
from tests.conftest import TEST_KEY
from tests.pipelines.data_science.conftest import (
    LOGGED_BY_THE_CATALOG,
    REGISTRATION,
    project_datasets,
    run_in_memory,
)


@pytest.fixture
def first_run(
    mlflow_store, tmp_path, primary, small_tables, contract, processing, fast_params, outlier_bounds
) -> dict[str, Any]:
    inputs = {
        "applications_primary": primary,
        "outlier_bounds": outlier_bounds,
        "true_default_probability": small_tables["true_default_probability"],
        "pseudonymisation_key": TEST_KEY,
        "params:data_contract": contract,
        "params:data_processing": processing,
        "params:data_science": fast_params,
        "model_card_template": (PROJECT_ROOT / "conf/base/templates/model_card.md.j2").read_text(),
    }
    logged = project_datasets(LOGGED_BY_THE_CATALOG, tmp_path)
    with mlflow.start_run():
        return run_in_memory(data_science.create_pipeline(), inputs, logged)


def test_the_aliases_move_after_every_other_registration_step():
    """promote_model_node needs what each other registration node makes, so nothing of the
    registration can run (and fail) after the champion alias has moved."""
    pipeline = data_science.create_pipeline()
    before_promote = {node.name for node in pipeline.to_nodes("promote_model_node").nodes}
    assert set(REGISTRATION) <= before_promote
    (promote,) = pipeline.only_nodes("promote_model_node").nodes
    assert promote.outputs == []


def test_first_model_beats_dummy_and_becomes_champion(first_run, fast_params):
    metrics, dummy = first_run["test_metrics"], first_run["dummy_test_metrics"]
    assert metrics["auc"] > 0.7 and dummy["auc"] == pytest.approx(0.5)
    assert metrics["business_cost"] < dummy["business_cost"]
    gate = first_run["gate_report"]
    assert gate["promote"] and "no champion yet" in gate["reasons"]
    client = MlflowClient()
    champion = client.get_model_version_by_alias("credit_scoring", CHAMPION)
    assert (
        champion.version == client.get_model_version_by_alias("credit_scoring", CHALLENGER).version
    )
    assert champion.tags["gate.decision"] == "promoted"


def test_registered_model_reloads_with_threshold_and_features(first_run):
    selected = first_run["selected_model"]
    loaded = load_model("models:/credit_scoring@champion")
    assert loaded.threshold == pytest.approx(selected.threshold)
    assert loaded.features == selected.features
    test = first_run["test_set"]
    np.testing.assert_allclose(loaded.predict_proba(test), selected.predict_proba(test), atol=1e-9)


def test_the_run_logs_what_the_api_is_built_from(first_run, outlier_bounds, contract, processing):
    champion = mlflow.MlflowClient().get_model_version_by_alias("credit_scoring", "champion")
    run = f"runs:/{champion.run_id}/{SERVING_ARTIFACTS}"
    assert mlflow.artifacts.load_dict(f"{run}/outlier_bounds.json") == outlier_bounds
    logged = mlflow.artifacts.load_dict(f"{run}/data_contract.json")
    assert type(contract).model_validate(logged) == contract
    logged = mlflow.artifacts.load_dict(f"{run}/data_processing.json")
    assert type(processing).model_validate(logged) == processing
    card = mlflow.artifacts.load_dict(f"{run}/{MODEL_CARD_ARTIFACT}")
    assert card["test_metrics"] == first_run["test_metrics"]
    assert card["dummy_metrics"] == first_run["dummy_test_metrics"]
    assert card["global_importance"] == first_run["shap_importance"]
    # the monitoring reference: held-out rows as the model sees them, with its score
    path = mlflow.artifacts.download_artifacts(f"runs:/{champion.run_id}/{REFERENCE_ARTIFACT}")
    reference = pd.read_parquet(path)
    assert list(reference.columns) == [*first_run["selected_model"].features, "score"]
    assert 0 < len(reference) <= len(first_run["validation_set"]) + len(first_run["test_set"])
    gate = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/gate_report.json")
    assert gate == first_run["gate_report"]
    assert f"model_card_v{champion.version}.md" in {
        a.path for a in mlflow.MlflowClient().list_artifacts(champion.run_id)
    }


def test_reports_and_explanations(first_run, contract):
    comparison = first_run["model_comparison"]
    assert set(comparison["candidate"]) == {"dummy", "logistic_regression", "lightgbm"}
    basis = comparison["selection_basis"].iloc[0]  # a small dataset: cross-validation
    assert basis == "cross_validation"
    assert comparison["cv_business_cost"].is_monotonic_increasing
    assert {
        "auc",
        "recall",
        "precision",
        "fbeta",
        "fit_seconds",
        "predict_seconds_per_1000_rows",
    } <= set(comparison.columns)
    assert 0.5 < first_run["test_metrics"]["oracle_auc"] <= 1
    importance = first_run["shap_importance"]
    assert set(importance) <= set(first_run["selected_model"].features) and len(importance) > 5
    card = first_run["model_card"]
    assert "Model card" in card and "Business cost" in card
    # the sensitive attributes come from the data contract (sensitive: true), not from code
    assert contract.sensitive_columns and all(f"`{c}`" in card for c in contract.sensitive_columns)
    assert (
        "CODE_GENDER" not in card.split("## Sensitive attributes")[1]
        or contract.columns["CODE_GENDER"].sensitive
    )
    assert first_run["leakage_report"]["suspects"] == {}
