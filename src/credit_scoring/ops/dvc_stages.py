"""Write ``dvc.yaml`` from the project's configuration, so a fork never edits it by hand.

The stages wrap the Kedro pipelines. Their data dependencies and outputs are the file paths
of the catalog entries the pipelines read and write (the raw tables of the data contract,
the validated tables, ...), and their parameters are the ``conf/`` files that define the
sections each pipeline reads: nothing here names a table of the worked example. The
synthetic-data stage is there only while the catalog reads the generator's own files.

    credit-scoring dvc-stages            # rewrite dvc.yaml (make dvc-stages)
    credit-scoring dvc-stages --check    # exit 1 if dvc.yaml is out of date

A test checks that the committed ``dvc.yaml`` is what this writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kedro.io.catalog_config_resolver import CatalogConfigResolver

from credit_scoring.config.checks import files_defining, parameter_files, pipeline_parameter_keys
from credit_scoring.config.loader import PROJECT_ROOT, config_loader
from credit_scoring.core.contract import DataContract, load_contract
from credit_scoring.pipelines import data_ingestion, data_processing, data_science
from credit_scoring.training.synthetic import GENERATED_FILES

HEADER = """\
# Written by `make dvc-stages` (credit-scoring dvc-stages) from conf/: edit conf/
# and regenerate, never this file (a test fails when it is out of date). The stages wrap the
# Kedro pipelines; dvc.lock (committed) records the exact data, code and parameters behind
# every output. `make repro` (dvc repro) re-runs what changed.
"""
# The template's code each stage runs (the same for every fork).
CODE = {
    "data_ingestion": [
        "src/credit_scoring/pipelines/data_ingestion",
        "src/credit_scoring/core",
        "src/credit_scoring/training/validation.py",
        "src/credit_scoring/training/privacy.py",
    ],
    "data_processing": [
        "src/credit_scoring/pipelines/data_processing",
        "src/credit_scoring/core",
        "src/credit_scoring/training/imputation.py",
    ],
    "data_science": [
        "src/credit_scoring/pipelines/data_science",
        "src/credit_scoring/core",
        "src/credit_scoring/training/modeling.py",
        "src/credit_scoring/training/registry.py",
        "src/credit_scoring/training/reporting.py",
    ],
}
DESCRIPTIONS = {
    "data_ingestion": "Minimise, pseudonymise and validate the raw tables of the data contract.",
    "data_processing": "Split, clean, build features, aggregate, impute; fill the feature store.",
    "data_science": (
        "Train, evaluate, explain and register a model in MLflow (the registry gate decides "
        "whether it becomes the champion). Optuna stops on time as well as on trials, so the "
        "metrics can differ slightly from run to run: they are tracked, not cached."
    ),
}


def _filepath(resolver: CatalogConfigResolver, name: str, optional: bool = True) -> str | None:
    config = resolver.resolve_pattern(name)
    if not optional and str(config.get("type", "")).endswith("OptionalCSVDataset"):
        return None  # may be absent (e.g. the generator's truth): not a dependency
    path = config.get("filepath") or (config.get("dataset") or {}).get("filepath")
    if not path:
        return None  # a database table or an in-memory dataset: not a file DVC can hash
    return _relative(str(path))


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return path


def _is_report(path: str) -> bool:
    return path.startswith("data/08_reporting/") and path.endswith(".json")


def _param_files(conf_dirs: list[Path], keys: list[str]) -> list[dict[str, list[str]]]:
    files = parameter_files(conf_dirs)
    entries: dict[str, list[str]] = {}
    for key in keys:
        for file in files_defining(files, (key,)):
            entries.setdefault(_relative(str(file)), []).append(key)
    return [{file: sorted(found)} for file, found in entries.items()]


def build_stages(env: str | None = None) -> dict[str, Any]:
    """The ``stages`` of dvc.yaml for the configuration environment ``env``."""
    loader = config_loader(env)
    parameters = loader["parameters"]
    contract: DataContract = load_contract(parameters["data_contract"])
    resolver = CatalogConfigResolver(
        loader["catalog"], default_runtime_patterns={"{default}": {"type": "MemoryDataset"}}
    )
    conf_root = Path(loader.conf_source)
    conf_dirs = [conf_root / loader.base_env]
    if env and env != loader.base_env:
        conf_dirs.append(conf_root / env)
    run = "kedro run" + (f" --env {env}" if env else "")
    pipelines = {
        "data_ingestion": data_ingestion.create_pipeline(contract),
        "data_processing": data_processing.create_pipeline(contract),
        "data_science": data_science.create_pipeline(),
    }
    stages: dict[str, Any] = {}
    raw = sorted(
        path for name in pipelines["data_ingestion"].inputs() if (path := _filepath(resolver, name))
    )
    synthetic = parameters.get("synthetic", {})
    generated = [f"{synthetic.get('output_dir', 'data/01_raw')}/{f}" for f in GENERATED_FILES]
    if raw and set(raw) <= set(generated):
        synthetic_files = [f for f in ("parameters_synthetic.yml",) if (conf_dirs[0] / f).exists()]
        stages["generate_synthetic_data"] = {
            "desc": "Synthetic raw tables (replace by `dvc add` of your own raw files).",
            "cmd": "credit-scoring generate-data",
            "deps": ["src/credit_scoring/training/synthetic.py"],
            "params": [{_relative(str(conf_dirs[0] / f)): ["synthetic"]} for f in synthetic_files],
            "outs": generated,
        }
    produced: set[str] = set()
    for name, pipeline in pipelines.items():
        inputs = {
            _filepath(resolver, d, optional="generate_synthetic_data" in stages)
            for d in pipeline.inputs()
        }
        inputs.discard(None)
        outputs = sorted(
            {p for d in pipeline.all_outputs() if (p := _filepath(resolver, d))} - produced
        )
        produced |= set(outputs)
        data_deps = sorted(p for p in inputs if p is not None and not p.startswith("conf/"))
        keys = sorted(pipeline_parameter_keys([pipeline]))
        stage: dict[str, Any] = {
            "desc": DESCRIPTIONS[name],
            "cmd": f"{run} --pipelines {name}",
            "deps": [
                *data_deps,
                *CODE[name],
                *sorted(p for p in inputs if p and p.startswith("conf/")),
            ],
            "params": _param_files(conf_dirs, keys),
        }
        if name == "data_science":
            # the model goes to MLflow; DVC keeps the metrics and the comparison as a plot
            reports = [p for p in outputs if _is_report(p) and "test_metrics" in p]
            stage["metrics"] = [{p: {"cache": False}} for p in reports]
            stage["plots"] = [
                {p: {"cache": False, "x": "candidate", "y": "business_cost"}}
                for p in outputs
                if p.endswith("model_comparison.csv")
            ]
        else:
            stage["outs"] = [p for p in outputs if not _is_report(p)]
            stage["metrics"] = [{p: {"cache": False}} for p in outputs if _is_report(p)]
        stages[name] = stage
    return {"stages": stages}


def render(env: str | None = None) -> str:
    return HEADER + yaml.safe_dump(build_stages(env), sort_keys=False, width=100)


def stale_dependencies(root: Path = PROJECT_ROOT) -> dict[str, list[str]]:
    """Code and parameter dependencies that differ from ``dvc.lock``, by stage.

    Only what is in the repository is checked (source folders, files, parameters): a
    dependency that another stage produces is data, which a fresh clone does not have.
    A stage missing from the lock counts as stale.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        produced = {str(out.def_path) for stage in stages for out in stage.outs}
        stale: dict[str, list[str]] = {}
        for stage in stages:
            for dep in stage.deps:
                if str(dep.def_path) in produced:
                    continue
                for path, change in (dep.status() or {}).items():
                    detail = ", ".join(change) if isinstance(change, dict) else str(change)
                    stale.setdefault(stage.name, []).append(f"{path} ({detail})")
        return stale


def write_stages(
    env: str | None = None, check: bool = False, output: Path = PROJECT_ROOT / "dvc.yaml"
) -> list[Path]:
    """Write dvc.yaml; with ``check``, write nothing. Returns the files that were out of
    date."""
    text = render(env)
    stale = [output] if not output.exists() or output.read_text() != text else []
    if not check and stale:
        output.write_text(text)
    return stale
