"""Real `kedro run` subprocesses on throw-away copies of the project configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.sandbox import kedro_run
from credit_scoring.training.privacy import DEVELOPMENT_KEY, KEY_ENV_VAR, pseudonymise_value
from credit_scoring.training.synthetic import generate_data
from tests.conftest import TEST_KEY

pytestmark = pytest.mark.integration


def kedro(
    project: Path, *args: str, key: str | None = TEST_KEY
) -> subprocess.CompletedProcess[str]:
    return kedro_run(project, *args, key=key, timeout=600)


FAST_SEARCH = (
    "data_science.candidates.lightgbm.search.n_trials=2,"
    "data_science.candidates.logistic_regression.search.n_trials=2,"
    "data_science.explanations.sample_size=200"
)


def test_end_to_end_run_on_a_tiny_generated_dataset(project_copy: Path):
    generate_data(n_applications=1500, output_dir=project_copy / "data/01_raw")
    result = kedro(project_copy, "--params", FAST_SEARCH, key=None)  # no key: development key
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "DEVELOPMENT PSEUDONYMISATION KEY" in result.stdout + result.stderr

    raw = pd.read_csv(project_copy / "data/01_raw/application_train.csv")
    table = pd.read_parquet(project_copy / "data/05_model_input/model_input_table.parquet")
    assert not table.isna().any().any()
    assert table["client_id"].iloc[0] in {
        pseudonymise_value(i, DEVELOPMENT_KEY) for i in raw["SK_ID_CURR"]
    }
    assert "SK_ID_CURR" not in table.columns
    report = pd.read_json(
        project_copy / "data/08_reporting/applications_validation_report.json", typ="series"
    )
    assert report["rows_in"] == len(raw)
    # no raw identifier in what the run printed
    logs = result.stdout + result.stderr
    assert not any(f"{i}" in logs for i in raw["SK_ID_CURR"].head(50))

    # a registered, explained model, champion through the gate, in the embedded MLflow store
    gate = json.loads((project_copy / "data/08_reporting/gate_report.json").read_text())
    assert gate["promote"] and gate["version"] == "1"
    store = f"sqlite:///{project_copy / 'mlflow.db'}"  # registry too: no process-wide default
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    champion = client.get_model_version_by_alias("credit_scoring", "champion")
    assert champion.tags["gate.decision"] == "promoted"
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"figures", "model_card_v1.md", "model_comparison.csv", "gate_report.json"} <= artifacts
    figures = {Path(a.path).name for a in client.list_artifacts(champion.run_id, "figures")}
    assert {
        "roc_curve.png",
        "shap_summary.png",
        "shap_waterfalls.png",
        "coefficient_path.png",
    } <= figures
    run = client.get_run(champion.run_id)
    # the nodes get typed sections, and MLflow still gets one readable parameter per key
    assert run.data.params["data_science.cv_folds"] == "3"
    assert "data_science" not in run.data.params and "data_contract" not in run.data.params
    assert (
        "test.auc" in run.data.metrics
        and "test.dummy_business_cost" in run.data.metrics
        and "git_commit" in run.data.tags
    )


def test_prod_environment_refuses_the_development_key(project_copy: Path):
    generate_data(n_applications=200, output_dir=project_copy / "data/01_raw")
    result = kedro(project_copy, "--env", "prod", "--pipelines", "data_ingestion", key=None)
    assert result.returncode != 0
    assert KEY_ENV_VAR in result.stdout + result.stderr
    assert not list((project_copy / "data/02_intermediate").glob("*.parquet"))


def test_a_differently_shaped_dataset_runs_with_a_conf_environment_only(project_copy: Path):
    """conf/example_loans (copied with conf/): other columns, labels, no id, another model name."""
    data = pd.read_csv(PROJECT_ROOT / "docs/examples/loans.csv")
    shutil.copy(PROJECT_ROOT / "docs/examples/loans.csv", project_copy / "data/01_raw/loans.csv")

    # no client id: no key is needed, and none is asked for or warned about
    result = kedro(
        project_copy, "--env", "example_loans", "--pipelines", "data_ingestion", key=None
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PSEUDONYMISATION" not in result.stdout + result.stderr
    result = kedro(project_copy, "--env", "example_loans", "--pipelines", "data_processing")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    table = pd.read_parquet(project_copy / "data/05_model_input/model_input_table.parquet")
    assert len(table) == len(data) - 1
    assert set(table["risk"]) == {0, 1}
    assert table["risk"].sum() == (data.drop(index=5)["risk"] == "bad").sum()
    assert {"LOAN_TO_INCOME", "YOUNG", "row_id"} <= set(table.columns)
    assert not {"branch_manager_email", "loan_amount_copy"} & set(table.columns)
    assert not table.drop(columns="split").isna().any().any()
    quarantine = pd.read_parquet(
        project_copy / "data/02_intermediate/applications_quarantine.parquet"
    )
    assert "housing: isin" in quarantine["_rejection_reason"].iloc[0]
    assert not (project_copy / "data/02_intermediate/bureau_validated.parquet").exists()
    # no client id, no client feature store (and no id routes in the API built from it)
    assert not (project_copy / "data/09_serving/serving.db").exists()

    # and the fork trains, evaluates and registers a model under its own name
    result = kedro(project_copy, "--env", "example_loans", "--pipelines", "data_science")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project_copy / "data/08_reporting/test_metrics.json").read_text())
    assert "oracle_auc" not in metrics  # no generator truth for a fork's data
    gate = json.loads((project_copy / "data/08_reporting/gate_report.json").read_text())
    assert gate["model_name"] == "loan_risk" and gate["version"] == "1"
    store = f"sqlite:///{project_copy / 'mlflow.db'}"  # registry too: no process-wide default
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("loan_risk", "1")  # registered under its own name
    assert version.tags["gate.decision"] == ("promoted" if gate["promote"] else "rejected")
    if gate["promote"]:
        assert str(client.get_model_version_by_alias("loan_risk", "champion").version) == "1"
    else:  # 600 rows give a 120-row test split: beating the dummy on cost there is a coin toss
        assert gate["reasons"][0].startswith("cost") and "dummy" in gate["reasons"][0]
        assert client.get_registered_model("loan_risk").aliases == {"challenger": 1}
    assert client.get_experiment_by_name("loan_risk") is not None
    card = (project_copy / "data/08_reporting/model_card.md").read_text()
    sensitive = card.split("## Sensitive attributes")[1]
    assert "`age`" in sensitive and "`sex`" in sensitive and "CODE_GENDER" not in card
    assert "no client id" in card

    # packaged under its own name, the API built from it has no id routes
    env = {k: v for k, v in os.environ.items() if "MLFLOW_" not in k}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project_copy / 'mlflow.db'}"
    packaging = [sys.executable, "-m", "credit_scoring.cli", "build", "--no-build"]
    packaging += ["--env", "example_loans", "--project", str(project_copy)]
    packaging += ["--alias", "champion" if gate["promote"] else "challenger"]
    result = subprocess.run(packaging, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    probe = textwrap.dedent("""
        import credit_scoring.serving.service as s
        from credit_scoring.serving import openapi, scoring
        try:
            scoring.check_client_id(s.SPEC, "a" * 64)
        except scoring.Unprocessable as error:
            assert "leave client_id out" in str(error)
            paths = openapi.extend({"paths": {}}, s.OPERATIONS)["paths"]
            print(s.SPEC.model_name, s.HAS_CLIENTS, sorted(paths))
    """)
    env.update(CREDIT_SCORING_MODEL_TAG="loan_risk:latest")
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the model card is there (it needs no client); no /clients routes
    assert result.stdout.strip().splitlines()[-1] == "loan_risk False ['/model/card']"


def test_a_configuration_typo_fails_before_anything_runs(project_copy: Path):
    generate_data(n_applications=200, output_dir=project_copy / "data/01_raw")
    local = project_copy / "conf" / "local"
    local.mkdir(exist_ok=True)
    (local / "parameters_data_science.yml").write_text("data_science:\n  cv_foldz: 3\n")
    started = time.monotonic()
    result = kedro(project_copy)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "data_science.cv_foldz: Extra inputs are not permitted" in output
    assert "conf/local/parameters_data_science.yml" in output
    assert "Traceback" not in output and "╭" not in output  # the message, not a stack dump
    assert not list((project_copy / "data/02_intermediate").iterdir())  # nothing ran
    print(f"typo reported after {elapsed:.1f} s")
