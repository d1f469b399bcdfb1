"""Batch scoring throughput: the vectorised batch path against the API's per-row path, and
pandas against Spark (mapInPandas, local[2]), with the same champion and the same clients.

One run, one machine (2 cores), one model: the trained project's registry champion, loaded
as the batch_scoring pipeline loads it (``ChampionScorerDataset``). The project's client
feature store is resampled to ``--clients`` rows with fresh pseudonyms. Targets:
  1. api_per_row: ``Scorer.probability`` on one record at a time (what GET
     /clients/{id}/score does per client), on a sample, as rows per second,
  2. pandas: ``score_clients`` on chunks (scores only, then with the events' feature JSON),
  3. spark: the same node on a Spark DataFrame (mapInPandas, local[2]; scores only, then
     with the feature JSON), the table cached in Spark before the clock starts,
  4. writes: the scores table and the prediction events into a fresh SQLite database.
Every target's probabilities are checked against the per-row path (max absolute difference).
Target: at least 50,000 applications per second on the faster engine. Medians of rounds.
Writes bench/results/batch_scoring.json.

    make bench-batch-scoring     # after `make run`
    python bench/batch_scoring.py --smoke [--project DIR]    # 2,000 clients, no rounds
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.batch_scoring import BatchScoringParams
from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.core.contract import load_contract

RESULTS = PROJECT_ROOT / "bench" / "results" / "batch_scoring.json"
TARGET_PER_S = 50_000


def clients_table(project: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` clients resampled from the project's client feature store, new pseudonyms."""
    from credit_scoring.datasets import TableDataset

    url = f"sqlite:///{project / 'data/09_serving/serving.db'}"
    store = TableDataset(url, "client_features").load()
    rows = store.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    rows["client_id"] = [hashlib.sha256(f"bench-{i}".encode()).hexdigest() for i in range(n)]
    return rows


def timed(fn: Any, rounds: int) -> tuple[float, Any]:
    """The median wall time of ``rounds`` calls, and the last call's result."""
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=PROJECT_ROOT, help="a trained project")
    parser.add_argument("--clients", type=int, default=300_000)
    parser.add_argument("--per-row-sample", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--no-spark", action="store_true", help="pandas and per-row only")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.per_row_sample, args.rounds, args.chunk_size = 2000, 200, 1, 700
    project = args.project.resolve()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{project / 'mlflow.db'}")
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    from credit_scoring.datasets import ChampionScorerDataset
    from credit_scoring.pipelines.batch_scoring.nodes import (
        build_prediction_events,
        score_clients,
        tabulate_scores,
    )
    from credit_scoring.storage.batch import record_batch_events, replace_batch_scores

    params = project_parameters(None, conf_source=project / "conf")
    contract = load_contract(params["data_contract"])
    scorer = ChampionScorerDataset(params["monitoring"]["model_name"]).load()
    table = clients_table(project, args.clients)
    features = table.drop(columns=["client_id", "observed_at"], errors="ignore")
    result: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "platform": platform.platform(),
        "model": {
            "version": scorer.spec.model_version,
            "kind": scorer.spec.kind,
            "features": len(scorer.features),
            "trees": scorer.booster.num_trees() if scorer.booster is not None else None,
        },
        "clients": args.clients,
        "chunk_size": args.chunk_size,
        "rounds": args.rounds,
    }

    # 1. the API's path, one record at a time, on a sample
    sample = features.head(args.per_row_sample)
    records = sample.astype(object).where(sample.notna(), None).to_dict(orient="records")
    per_row_s, per_row = timed(lambda: [scorer.probability(r) for r in records], 1)
    per_row = np.asarray(per_row)
    result["api_per_row"] = {"rows": len(records), "rows_per_s": round(len(records) / per_row_s)}

    # the floor: the booster alone on the whole table already turned into model input
    if scorer.booster is not None:
        rows = scorer.transformer.matrix(features)
        floor_s, _ = timed(lambda: scorer.booster.predict(rows, num_threads=2), args.rounds)
        result["booster_predict_floor"] = {
            "seconds": round(floor_s, 3),
            "rows_per_s": round(args.clients / floor_s),
        }
        del rows

    def run(clients: Any, events: bool) -> pd.DataFrame:
        batch = BatchScoringParams(
            run_id="bench", chunk_size=args.chunk_size, record_events=events, partitions=None
        )
        return score_clients(clients, scorer, contract, batch)

    def measure(name: str, clients: Any) -> pd.DataFrame:
        run(clients, True)  # warm-up, not timed: Spark starts its Python workers here
        seconds, scored = timed(lambda: run(clients, False), args.rounds)
        with_events_s, with_events = timed(lambda: run(clients, True), args.rounds)
        got = scored.set_index("client_id").loc[table["client_id"], "probability"].to_numpy()
        result[name] = {
            "scores_seconds": round(seconds, 3),
            "scores_rows_per_s": round(args.clients / seconds),
            "with_event_features_seconds": round(with_events_s, 3),
            "with_event_features_rows_per_s": round(args.clients / with_events_s),
            "max_abs_diff_vs_api_per_row": float(
                np.max(np.abs(got[: len(per_row)] - per_row), initial=0.0)
            ),
        }
        print(name, result[name], flush=True)
        return with_events

    scored = measure("pandas", table)
    if not args.no_spark:
        from credit_scoring.config.loader import config_loader
        from credit_scoring.config.spark import spark_settings
        from credit_scoring.engines.spark import start_session

        settings = spark_settings(config_loader(env="spark")["spark"])
        spark = start_session({**settings, "spark.master": "local[2]"})
        frame = spark.createDataFrame(table).repartition(2).cache()
        frame.count()  # read and cached before the clock starts: scoring is measured
        measure("spark_local_2", frame)
        spark.stop()

    # 4. the writes, into a fresh SQLite database
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'serving.db'}"
        started = time.perf_counter()
        replace_batch_scores(url, tabulate_scores(scored)["table"])
        scores_s = time.perf_counter() - started
        events = build_prediction_events(scored, BatchScoringParams(run_id="bench"))
        started = time.perf_counter()
        record_batch_events(url, events)
        events_s = time.perf_counter() - started
    result["writes_sqlite"] = {
        "scores_table_seconds": round(scores_s, 3),
        "events_seconds": round(events_s, 3),
        "events_rows_per_s": round(args.clients / events_s),
    }
    engines = [e for e in ("pandas", "spark_local_2") if e in result]
    fastest = max(engines, key=lambda e: result[e]["scores_rows_per_s"])
    result["ratios"] = {
        "pandas_over_api_per_row": round(
            result["pandas"]["scores_rows_per_s"] / result["api_per_row"]["rows_per_s"], 1
        ),
        **(
            {
                "spark_over_pandas": round(
                    result["spark_local_2"]["scores_rows_per_s"]
                    / result["pandas"]["scores_rows_per_s"],
                    2,
                )
            }
            if "spark_local_2" in result
            else {}
        ),
    }
    result["targets_met"] = {
        "faster_engine": fastest,
        f"at_least_{TARGET_PER_S}_per_s": result[fastest]["scores_rows_per_s"] >= TARGET_PER_S,
        "same_probabilities_as_api_1e-9": all(
            result[e]["max_abs_diff_vs_api_per_row"] <= 1e-9 for e in engines
        ),
    }
    if "booster_predict_floor" in result:
        result["ratios"]["pandas_over_booster_floor"] = round(
            result["pandas"]["scores_rows_per_s"] / result["booster_predict_floor"]["rows_per_s"], 2
        )
    print(result["ratios"], result["targets_met"])
    write_results(args, RESULTS, result)


if __name__ == "__main__":
    main()
