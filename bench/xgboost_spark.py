"""The distributed XGBoost candidate beside the LightGBM champion, on the same rows.

After `make run` (which trains and registers the LightGBM champion on the default synthetic
data), this trains the Spark environment's `xgboost_spark` candidate with the pipeline's own
node (`train_candidates`: the same folds, threshold and monotone constraints) on the Spark
session of conf/spark/spark.yml, and scores both on the same validation and test rows.

    make run && .venv/bin/python bench/xgboost_spark.py [--project DIR] [--smoke]

``--smoke`` trains on 1,500 training rows with a 2-fold search: the code path, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.data_science import DataScienceParams
from credit_scoring.config.loader import PROJECT_ROOT, config_loader, project_parameters
from credit_scoring.config.spark import spark_settings
from credit_scoring.core.contract import DataContract
from credit_scoring.core.processing import ProcessingParams
from credit_scoring.engines.spark import start_session, task_slots
from credit_scoring.pipelines.data_science.nodes import train_candidates
from credit_scoring.training.metrics import classification_metrics
from credit_scoring.training.modeling import TrainedModel
from credit_scoring.training.registry import load_model

RESULTS = PROJECT_ROOT / "bench" / "results" / "xgboost_spark.json"

CANDIDATE = "xgboost_spark"


def _metrics(model: TrainedModel, frame: pd.DataFrame, target: str, params: DataScienceParams):
    scores = model.predict_proba(frame)
    y = frame[target].to_numpy()
    return classification_metrics(y, scores, model.decide(scores), params.cost, params.fbeta_beta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--project", type=Path, default=PROJECT_ROOT, help="a trained project")
    args = parser.parse_args(argv)
    os.chdir(args.project)
    raw = project_parameters(env="spark", conf_source=PROJECT_ROOT / "conf")
    params = DataScienceParams.model_validate(raw["data_science"])
    if args.smoke:
        params = params.model_copy(update={"cv_folds": 2})
    contract = DataContract.model_validate(raw["data_contract"])
    processing = ProcessingParams.model_validate(raw["data_processing"])
    data = Path("data/05_model_input")
    train, validation, test = (
        pd.read_parquet(data / f"{name}_set.parquet") for name in ("train", "validation", "test")
    )
    target = contract.target.column if contract.target else "TARGET"
    if args.smoke:
        train = train.sample(min(1500, len(train)), random_state=0).reset_index(drop=True)

    spark = start_session(spark_settings(config_loader(env="spark")["spark"]))
    only = {n: c for n, c in params.candidates.items() if n in (CANDIDATE, "dummy")}
    started = time.perf_counter()
    xgboost = train_candidates(
        train, contract, processing, params.model_copy(update={"candidates": only})
    )[CANDIDATE]
    seconds = time.perf_counter() - started

    uri = f"sqlite:///{args.project.resolve() / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    champion = load_model(f"models:/{params.registry.model_name}@champion")

    rows = {}
    for name, model in ((f"{champion.name} (champion)", champion), (CANDIDATE, xgboost)):
        rows[name] = {
            "kind": model.kind,
            "validation_auc": _metrics(model, validation, target, params)["auc"],
            **{f"test_{k}": v for k, v in _metrics(model, test, target, params).items()},
        }
    table = pd.DataFrame(rows).T
    columns = ["kind", "validation_auc", "test_auc", "test_business_cost", "test_recall"]
    print(table[columns].to_string())
    results = {
        "rows": {"train": len(train), "validation": len(validation), "test": len(test)},
        "spark_master": spark.conf.get("spark.master"),
        "task_slots": task_slots(spark),
        "num_workers": only[CANDIDATE].spark.num_workers if only[CANDIDATE].spark else 0,
        "xgboost_cv_folds_plus_refit_seconds": round(seconds, 1),
        "xgboost_threshold": xgboost.threshold,
        "models": {name: {k: v for k, v in row.items()} for name, row in rows.items()},
    }
    results["test_auc_gap_to_champion"] = abs(
        rows[CANDIDATE]["test_auc"] - next(r["test_auc"] for n, r in rows.items() if n != CANDIDATE)
    )
    results["met"] = results["test_auc_gap_to_champion"] <= 0.01
    print(json.dumps(results, indent=2, default=str))
    write_results(args, RESULTS, results)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
