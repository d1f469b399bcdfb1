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
# What `kedro run` executes besides a pipeline's own package: the Kedro glue (settings,
# hooks, the catalog's dataset classes). The pipeline registry is left out on purpose: it
# imports every pipeline, and a stage depends on its own pipeline only.
KEDRO_GLUE = ("credit_scoring.settings", "credit_scoring.hooks", "credit_scoring.datasets")
PACKAGE = "credit_scoring"


def code_dependencies(roots: list[str], source_dir: Path = PROJECT_ROOT / "src") -> list[str]:
    """The source files a stage runs: ``roots`` and every module of the package that they
    import, directly or not (grimp's import graph, function-level imports included), with
    the ``__init__.py`` of each package on the way. A package whose every module is needed
    is named as its folder. Derived, never kept by hand: a module that a stage imports only
    through another one still makes the stage stale when it changes."""
    import grimp

    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    needed: set[str] = set()
    for root in roots:
        modules = {root} | graph.find_descendants(root) if root in graph.modules else set()
        for module in modules:
            needed |= {module} | graph.find_upstream_modules(module)
    needed = {m for m in needed if m.split(".")[0] == PACKAGE}
    needed |= {".".join(m.split(".")[:i]) for m in needed for i in range(1, m.count(".") + 1)}
    packages = {m for m in graph.modules if graph.find_children(m)}
    # a package all of whose modules are needed is one folder; otherwise its files
    whole = {p for p in packages if {p} | graph.find_descendants(p) <= needed and p != PACKAGE}
    paths = set()
    for module in needed:
        if any(module == w or module.startswith(w + ".") for w in whole):
            top = min((w for w in whole if module == w or module.startswith(w + ".")), key=len)
            paths.add(top.replace(".", "/"))
        elif module in packages:
            paths.add(module.replace(".", "/") + "/__init__.py")
        else:
            paths.add(module.replace(".", "/") + ".py")
    prefix = source_dir.relative_to(PROJECT_ROOT) if source_dir.is_absolute() else source_dir
    return sorted(f"{prefix}/{p}" for p in paths)


def stage_code(pipeline: str) -> list[str]:
    """The code dependencies of the stage that runs ``kedro run --pipelines <pipeline>``."""
    return code_dependencies([f"{PACKAGE}.pipelines.{pipeline}", *KEDRO_GLUE])


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
            "deps": code_dependencies([f"{PACKAGE}.training.synthetic"]),
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
                *stage_code(name),
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


TRAIN_WORKFLOW = PROJECT_ROOT / ".github/workflows/train.yml"
PATHS_BEGIN = "      # -- code of the DVC stages: written by `make dvc-stages`, do not edit --\n"
PATHS_END = "      # -- end of the code of the DVC stages --\n"


def workflow_paths(env: str | None = None) -> list[str]:
    """The push paths that must start training: every stage's code (a folder as ``dir/**``)."""
    code = {
        dep
        for stage in build_stages(env)["stages"].values()
        for dep in stage["deps"]
        if dep.startswith("src/")
    }
    folders = {d for d in code if not d.endswith(".py")}
    files = {d for d in code - folders if not any(d.startswith(f + "/") for f in folders)}
    return [*sorted(f'"{d}/**"' for d in folders), *sorted(files)]


def render_workflow(text: str, env: str | None = None) -> str:
    """``text`` (train.yml) with its generated block of code paths replaced."""
    if PATHS_BEGIN not in text or PATHS_END not in text:
        raise ValueError(
            f"train.yml lacks the markers {PATHS_BEGIN.strip()!r} ... {PATHS_END.strip()!r}"
        )
    head, rest = text.split(PATHS_BEGIN, 1)
    _, tail = rest.split(PATHS_END, 1)
    block = "".join(f"      - {p}\n" for p in workflow_paths(env))
    return head + PATHS_BEGIN + block + PATHS_END + tail


def write_stages(
    env: str | None = None, check: bool = False, output: Path = PROJECT_ROOT / "dvc.yaml"
) -> list[Path]:
    """Write dvc.yaml and train.yml's code paths; with ``check``, write nothing and return
    the files that are out of date."""
    wanted = {output: render(env)}
    if env is None and TRAIN_WORKFLOW.exists():
        wanted[TRAIN_WORKFLOW] = render_workflow(TRAIN_WORKFLOW.read_text(), env)
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if not check:
        for path in stale:
            path.write_text(wanted[path])
    return stale
