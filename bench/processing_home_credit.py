"""Wall time and peak memory of ingestion + processing at Home Credit size.

Generates the synthetic tables at 307,511 applications (~1.7M bureau rows) in a throw-away
copy of the project, then measures, in one run on the same data:
  1. `kedro run --pipelines data_ingestion` and `--pipelines data_processing` (what users run:
     start-up, config, Parquet I/O, hooks), each in its own process;
  2. the peer: the same two pipelines' nodes run in-process on an in-memory catalog
     (no start-up, no files), i.e. the cost of the data work alone.
Writes bench/results/processing_home_credit.json.

    uv run python bench/processing_home_credit.py [--n-applications 307511]
    uv run python bench/processing_home_credit.py --smoke    # 1,000 applications (bench/smoke.py)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from smoke import add_arguments, write_results  # bench/smoke.py

from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.config.sections import SECTIONS
from credit_scoring.config.synthetic import HOME_CREDIT_SIZE, SyntheticParams
from credit_scoring.core.contract import load_contract
from credit_scoring.devtools.sandbox import kedro_run, make_project_copy
from credit_scoring.pipelines import data_ingestion, data_processing
from credit_scoring.training.privacy import DEVELOPMENT_KEY
from credit_scoring.training.synthetic import generate, write

RESULTS = PROJECT_ROOT / "bench" / "results" / "processing_home_credit.json"
SMOKE_APPLICATIONS = 1000


def _kedro_run(project: Path, pipeline: str) -> dict[str, float]:
    start = time.perf_counter()
    kedro_run(project, "--pipelines", pipeline, check=True)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": round(wall, 2), "peak_rss_mb_children_so_far": round(peak_mb)}


def _in_memory(raw: Path) -> dict[str, float]:
    params = project_parameters(env="base")
    contract = load_contract(params["data_contract"])
    pipeline = data_ingestion.create_pipeline(contract) + data_processing.create_pipeline(contract)
    start = time.perf_counter()
    inputs = {
        "applications_raw": pd.read_csv(raw / "application_train.csv"),
        "bureau_raw": pd.read_csv(raw / "bureau.csv"),
        "pseudonymisation_key": DEVELOPMENT_KEY,
        **{  # typed, as Kedro hands them to the nodes
            f"params:{k}": SECTIONS[k].model_validate(params[k])
            for k in ("data_contract", "data_ingestion", "data_processing")
        },
    }
    read = time.perf_counter() - start
    catalog = DataCatalog({k: MemoryDataset(v) for k, v in inputs.items()})
    SequentialRunner().run(pipeline, catalog)
    return {
        "wall_s": round(time.perf_counter() - start, 2),
        "csv_read_s": round(read, 2),
        "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-applications", type=int, default=None, help="default: Home Credit's")
    add_arguments(parser)
    args = parser.parse_args(argv)
    n_applications = args.n_applications or (SMOKE_APPLICATIONS if args.smoke else HOME_CREDIT_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project_copy(Path(tmp))
        raw = project / "data" / "01_raw"
        start = time.perf_counter()
        tables = generate(SyntheticParams(n_applications=n_applications))
        write(tables, raw)
        generation = time.perf_counter() - start
        rows = {name: len(frame) for name, frame in tables.items()}
        del tables
        ingestion = _kedro_run(project, "data_ingestion")
        processing = _kedro_run(project, "data_processing")
        in_memory = _in_memory(raw)
    kedro_total = ingestion["wall_s"] + processing["wall_s"]
    result = {
        "machine": {"cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
        "rows": rows,
        "generate_s": round(generation, 2),
        "kedro_run_data_ingestion": ingestion,
        "kedro_run_data_processing": processing,
        "peer_in_memory_nodes": in_memory,
        "kedro_total_over_in_memory": round(kedro_total / in_memory["wall_s"], 2),
    }
    print(json.dumps(result, indent=2))
    write_results(args, RESULTS, result)


if __name__ == "__main__":
    main()
