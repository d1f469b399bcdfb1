"""dvc.yaml is written from conf/: up to date, and a fork's stages name only its own data."""

from __future__ import annotations

import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import grimp
import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.ops.dvc_stages import (
    TRAIN_WORKFLOW,
    build_stages,
    render,
    stale_dependencies,
    write_stages,
)


def test_the_committed_dvc_yaml_is_what_conf_gives():
    assert (PROJECT_ROOT / "dvc.yaml").read_text() == render(), "run `make dvc-stages`"


def test_stages_follow_the_catalog_and_the_parameter_files():
    stages = build_stages()["stages"]
    assert list(stages) == [
        "generate_synthetic_data",
        "data_ingestion",
        "data_processing",
        "data_science",
    ]
    ingestion = stages["data_ingestion"]
    raw = set(stages["generate_synthetic_data"]["outs"])
    assert {d for d in ingestion["deps"] if d.startswith("data/")} <= raw
    assert set(stages["data_processing"]["deps"]) & set(ingestion["outs"])
    assert {"conf/base/parameters_data_contract.yml": ["data_contract"]} in ingestion["params"]


def test_a_forks_stages_name_none_of_the_worked_examples_tables():
    text = yaml.safe_dump(build_stages("example_loans"))
    stages = build_stages("example_loans")["stages"]
    assert "generate_synthetic_data" not in stages  # the catalog reads the fork's own file
    assert "data/01_raw/loans.csv" in stages["data_ingestion"]["deps"]
    assert "--env example_loans" in stages["data_ingestion"]["cmd"]
    for name in ("application_train", "bureau", "true_default_probability"):
        assert name not in text
    assert {"conf/example_loans/parameters_data_contract.yml": ["data_contract"]} in stages[
        "data_ingestion"
    ]["params"]


def test_dvc_lock_is_true_to_the_code_and_parameters_of_every_stage():
    """A stage whose code or parameters changed after `dvc.lock` was written would be re-run by
    `dvc repro` while the lock claims it is current (outputs are not checked: not in git)."""
    stale = stale_dependencies()
    assert not stale, f"dvc.lock is out of date: run `make repro` and commit it. {stale}"


def _repo_copy(tmp_path: Path) -> Path:
    """The files DVC reads (stages, lock, code, conf) in a throw-away git repository."""
    copy = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "dvc.yaml", "dvc.lock", ".dvc", ".dvcignore", "src", "conf"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if (PROJECT_ROOT / name).exists():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    return copy


def test_a_changed_stage_dependency_is_reported(tmp_path):
    copy = _repo_copy(tmp_path)
    before = stale_dependencies(copy)  # what the working tree already changed, if anything
    (copy / "src/credit_scoring/core/contract.py").write_text("# changed\n", encoding="utf-8")
    params = copy / "conf/base/parameters_synthetic.yml"
    params.write_text(params.read_text().replace("seed: 42", "seed: 43"))
    stale = stale_dependencies(copy)
    assert set(stale) == {
        "generate_synthetic_data",
        "data_ingestion",
        "data_processing",
        "data_science",
    }
    assert stale != before
    assert stale["generate_synthetic_data"] == ["conf/base/parameters_synthetic.yml (synthetic)"]


def _imported_only_indirectly(module: str) -> list[str]:
    graph = grimp.build_graph("credit_scoring", cache_dir=None)
    direct = graph.find_modules_directly_imported_by(module)
    return sorted(
        m
        for m in graph.find_upstream_modules(module) - direct
        if not graph.find_children(m)  # a module, not a package
    )


def test_a_module_the_training_nodes_import_only_indirectly_makes_training_stale(tmp_path):
    """The imputers are imported by the modeling module, not by the training nodes; the model
    pipeline re-fits them. Editing them must make `dvc repro` retrain, even when the processed
    table comes out identical (a hand-kept list of code dependencies once missed this)."""
    indirect = _imported_only_indirectly("credit_scoring.pipelines.data_science.nodes")
    assert "credit_scoring.training.imputation" in indirect
    copy = _repo_copy(tmp_path)
    module = copy / "src/credit_scoring/training/imputation.py"
    module.write_text(module.read_text() + "\n# changed\n", encoding="utf-8")
    assert "data_science" in stale_dependencies(copy)


def test_every_stage_lists_the_whole_import_closure_of_its_pipeline():
    stages = build_stages()["stages"]
    for name in ("data_ingestion", "data_processing", "data_science"):
        deps = stages[name]["deps"]
        for module in _imported_only_indirectly(f"credit_scoring.pipelines.{name}.nodes"):
            path = "src/" + module.replace(".", "/") + ".py"
            assert any(path == d or path.startswith(d + "/") for d in deps), (name, path)
    synthetic = stages["generate_synthetic_data"]["deps"]
    assert "src/credit_scoring/training/modeling.py" not in synthetic  # only what it imports


def test_the_training_workflow_starts_on_every_stages_code():
    workflow = yaml.safe_load(TRAIN_WORKFLOW.read_text())
    paths = workflow[True]["push"]["paths"]  # YAML 1.1 reads the key `on` as True
    code = {d for s in build_stages()["stages"].values() for d in s["deps"] if d.startswith("src/")}
    for dep in code:
        assert any(fnmatch(dep, p.removesuffix("/**") + "*") or dep == p for p in paths), dep
    assert write_stages(check=True) == [], "run `make dvc-stages`"
