"""dvc.yaml is written from conf/: up to date, and a fork's stages name only its own data."""

from __future__ import annotations

import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.ops.dvc_stages import build_stages, render, stale_dependencies


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


def test_a_changed_stage_dependency_is_reported(tmp_path):
    import shutil
    import subprocess

    copy = tmp_path / "repo"
    files = subprocess.run(
        ["git", "ls-files", "dvc.yaml", "dvc.lock", ".dvc", ".dvcignore", "src", "conf"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
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
