"""Model quality and platform overhead of training at Home Credit size.

In one run, on the same data and machine:
  1. prepares a throw-away project copy with 307,511 synthetic applications, ingested and
     processed by `kedro run` (not timed against anything);
  2. the peer, a bare script: the same training work (split, leakage check, tuned candidates,
     selection, test evaluation, explanations) by calling the node functions directly, with
     no Kedro and no MLflow;
  3. `kedro run --pipelines data_science`: the same work plus Kedro, MLflow tracking, model
     logging, the registry gate and the model card.
Both use the same parameters, with time budgets lifted so that both run every Optuna trial.
Targets: kedro/bare <= 1.15; test AUC >= 0.97 x oracle AUC; business cost below the dummy's.
Writes bench/results/training_home_credit.json.

    uv run python bench/training_home_credit.py [--n-applications 307511]
    uv run python bench/training_home_credit.py --smoke   # 1,500 applications, one trial each
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.config.sections import SECTIONS
from credit_scoring.config.synthetic import HOME_CREDIT_SIZE, SyntheticParams
from credit_scoring.devtools.sandbox import kedro_run, make_project_copy
from credit_scoring.pipelines.data_science import nodes
from credit_scoring.training.privacy import DEVELOPMENT_KEY
from credit_scoring.training.synthetic import generate, write

RESULTS = PROJECT_ROOT / "bench" / "results" / "training_home_credit.json"
NO_TIMEOUT = 24 * 3600
SMOKE_APPLICATIONS = 1500


def _project_copy(root: Path, data_science: dict[str, Any]) -> Path:
    make_project_copy(root)
    (root / "conf/base/parameters_data_science.yml").write_text(
        yaml.safe_dump({"data_science": data_science}, sort_keys=False)
    )
    return root


def _kedro(project: Path, pipeline: str) -> float:
    start = time.perf_counter()
    kedro_run(project, "--pipelines", pipeline, check=True)
    return time.perf_counter() - start


def _bare(
    primary: pd.DataFrame, truth: pd.DataFrame, params: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """The same training work as the pipeline, as plain function calls."""
    contract, processing, science = (  # typed, as Kedro hands them to the nodes
        SECTIONS[key].model_validate(params[key])
        for key in ("data_contract", "data_processing", "data_science")
    )
    start = time.perf_counter()
    split = nodes.split_data(primary, contract)
    nodes.check_leakage(split["train"], contract, science)
    models = nodes.train_candidates(split["train"], contract, processing, science)
    selection = nodes.select_model(models, split["validation"], contract, science)
    evaluation = nodes.evaluate_model(
        selection["selected"], models, split["test"], truth, DEVELOPMENT_KEY, contract, science
    )
    nodes.explain_model(selection["selected"], split["train"], split["test"], contract, science)
    nodes.plot_coefficient_path(models, split["train"], contract, science)
    return time.perf_counter() - start, {
        "selected": selection["selected"].name,
        "test": evaluation["metrics"],
        "dummy_test": evaluation["dummy_metrics"],
    }


def _smoke_sized(science: dict[str, Any]) -> None:
    """Every candidate still tuned, once, on two folds, small; explanations on a few rows."""
    science["cv_folds"] = 2
    for candidate in science["candidates"].values():
        if candidate.get("search"):
            candidate["search"]["n_trials"] = 1
        if "n_estimators" in candidate.get("fixed", {}):
            candidate["fixed"]["n_estimators"] = 20
    science["explanations"].update(sample_size=100, permutation_repeats=1)
    science["explanations"]["coefficient_path"]["steps"] = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-applications", type=int, default=None, help="default: Home Credit's")
    add_arguments(parser)
    args = parser.parse_args(argv)
    n_applications = args.n_applications or (SMOKE_APPLICATIONS if args.smoke else HOME_CREDIT_SIZE)
    params = project_parameters(env="base")
    science = json.loads(json.dumps(params["data_science"]))
    for candidate in science["candidates"].values():
        if candidate.get("search"):
            candidate["search"]["timeout_s"] = NO_TIMEOUT
    if args.smoke:
        _smoke_sized(science)
    params["data_science"] = science

    with tempfile.TemporaryDirectory() as tmp:
        project = _project_copy(Path(tmp), science)
        tables = generate(SyntheticParams(n_applications=n_applications))
        write(tables, project / "data/01_raw")
        rows = {name: len(frame) for name, frame in tables.items()}
        del tables
        prepare = _kedro(project, "data_ingestion") + _kedro(project, "data_processing")
        primary = pd.read_parquet(project / "data/03_primary/applications_primary.parquet")
        truth = pd.read_csv(project / "data/01_raw/true_default_probability.csv")
        bare_s, bare = _bare(primary, truth, params)
        del primary
        kedro_s = _kedro(project, "data_science")
        kedro_metrics = json.loads((project / "data/08_reporting/test_metrics.json").read_text())
        gate = json.loads((project / "data/08_reporting/gate_report.json").read_text())

    test = bare["test"]
    result = {
        "rows": rows,
        "prepare_ingestion_processing_s": round(prepare, 1),
        "bare_script_s": round(bare_s, 1),
        "kedro_run_data_science_s": round(kedro_s, 1),
        "overhead_ratio": round(kedro_s / bare_s, 3),
        "overhead_target": 1.15,
        "selected": bare["selected"],
        "test_auc": round(test["auc"], 4),
        "oracle_auc": round(test.get("oracle_auc", float("nan")), 4),
        "auc_over_oracle": round(test.get("auc_over_oracle", float("nan")), 4),
        "auc_over_oracle_target": 0.97,
        "business_cost": test["business_cost"],
        "dummy_business_cost": bare["dummy_test"]["business_cost"],
        "kedro_run_test_auc": round(kedro_metrics["auc"], 4),
        "kedro_run_gate": gate["summary"],
    }
    print(json.dumps(result, indent=2))
    write_results(args, RESULTS, result)


if __name__ == "__main__":
    main()
