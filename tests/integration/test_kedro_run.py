"""Real `kedro run` subprocesses on throw-away copies of the project configuration."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from credit_scoring.privacy import DEVELOPMENT_KEY, KEY_ENV_VAR, pseudonymise_value
from credit_scoring.sandbox import kedro_run
from credit_scoring.synthetic import main as generate_main
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
    generate_main(["--n-applications", "1500", "--output-dir", str(project_copy / "data/01_raw")])
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
    client = MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
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
    assert (
        "test.auc" in run.data.metrics
        and "test.dummy_business_cost" in run.data.metrics
        and "git_commit" in run.data.tags
    )


def test_prod_environment_refuses_the_development_key(project_copy: Path):
    generate_main(["--n-applications", "200", "--output-dir", str(project_copy / "data/01_raw")])
    result = kedro(project_copy, "--env", "prod", "--pipeline", "data_ingestion", key=None)
    assert result.returncode != 0
    assert KEY_ENV_VAR in result.stdout + result.stderr
    assert not list((project_copy / "data/02_intermediate").glob("*.parquet"))


FORK_CONTRACT = """
data_contract:
  id_column: customer_ref
  pseudonymised_id_column: customer_id
  target: {column: risk, positive: bad, negative: good}
  columns:
    age: {dtype: int, nullable: false, min: 18, max: 100}
    monthly_income: {dtype: float, min: 0}
    loan_amount: {dtype: float, nullable: false, min: 0}
    loan_amount_copy: {dtype: float, min: 0}
    purpose: {dtype: category, allowed: [car, house, studies, other]}
    housing: {dtype: category, allowed: [own, rent, free]}
    existing_loans: {dtype: int, min: 0}
  secondary_tables: {}
"""

FORK_PROCESSING = """
data_processing:
  anomalies: []
  outliers:
    monthly_income: {method: iqr, factor: 3, action: clip}
  domain_features:
    LOAN_TO_INCOME: {op: ratio, left: loan_amount, right: monthly_income}
    YOUNG: {op: less_than, left: age, value: 25}
  secondary_aggregations: {}
  irrelevant_columns: {max_missing_fraction: 0.5, id_like_unique_ratio: 0.95, drop_constant: true, keep: []}
  imputation:
    - {name: categories, select: categorical, strategy: most_frequent}
    - {name: numbers, select: numeric, strategy: median}
"""


def _fork_dataset(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    income = rng.lognormal(8, 0.4, n).round(2)
    income[rng.random(n) < 0.1] = np.nan
    loan = rng.lognormal(9, 0.5, n).round(2)
    frame = pd.DataFrame(
        {
            "customer_ref": [f"C-{i:05d}" for i in range(n)],
            "age": rng.integers(18, 80, n),
            "monthly_income": income,
            "loan_amount": loan,
            "loan_amount_copy": loan,
            "purpose": rng.choice(["car", "house", "studies", "other", None], n),
            "housing": rng.choice(["own", "rent", "free"], n),
            "existing_loans": rng.integers(0, 4, n),
            "branch_manager_email": "someone@example.com",  # not in the contract: minimised away
            "risk": rng.choice(["good", "bad"], n, p=[0.8, 0.2]),
        }
    )
    frame.loc[5, "housing"] = "boat"  # breaks the contract: quarantined
    return frame


def test_a_differently_shaped_dataset_runs_with_a_conf_environment_only(project_copy: Path):
    fork = project_copy / "conf" / "fork"
    fork.mkdir()
    (fork / "parameters_data_contract.yml").write_text(FORK_CONTRACT)
    (fork / "parameters_data_processing.yml").write_text(FORK_PROCESSING)
    (fork / "catalog.yml").write_text(
        textwrap.dedent("""
        applications_raw:
          type: pandas.CSVDataset
          filepath: data/01_raw/loans.csv
    """)
    )
    data = _fork_dataset()
    data.to_csv(project_copy / "data/01_raw/loans.csv", index=False)

    result = kedro(project_copy, "--env", "fork", "--pipeline", "data_ingestion")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = kedro(project_copy, "--env", "fork", "--pipeline", "data_processing")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    table = pd.read_parquet(project_copy / "data/05_model_input/model_input_table.parquet")
    assert len(table) == len(data) - 1
    assert set(table["risk"]) == {0, 1}
    assert table["risk"].sum() == (data.drop(index=5)["risk"] == "bad").sum()
    assert {"LOAN_TO_INCOME", "YOUNG", "customer_id"} <= set(table.columns)
    assert not {"customer_ref", "branch_manager_email", "loan_amount_copy"} & set(table.columns)
    assert not table.isna().any().any()
    quarantine = pd.read_parquet(
        project_copy / "data/02_intermediate/applications_quarantine.parquet"
    )
    assert "housing: isin" in quarantine["_rejection_reason"].iloc[0]
    assert not (project_copy / "data/02_intermediate/bureau_validated.parquet").exists()

    # and the fork trains, evaluates and registers a model with the same conf environment
    result = kedro(project_copy, "--env", "fork", "--pipeline", "data_science")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project_copy / "data/08_reporting/test_metrics.json").read_text())
    assert "oracle_auc" not in metrics  # no generator truth for a fork's data
    gate = json.loads((project_copy / "data/08_reporting/gate_report.json").read_text())
    assert gate["model_name"] == "credit_scoring" and gate["version"] == "1"
