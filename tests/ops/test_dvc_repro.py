"""`dvc repro` on a fresh copy of the repository reproduces the committed dvc.lock."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_git_files

pytestmark = pytest.mark.integration


def _run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CREDIT_SCORING_PSEUDONYMISATION_KEY", None)  # the lock was made with the dev key
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


DATA_STAGES = ("generate_synthetic_data", "data_ingestion", "data_processing")
# Iterative imputation fits BayesianRidge through BLAS, whose last bits depend on the CPU's
# vector instructions: this output is reproduced exactly on one machine, not across CPUs.
CPU_DEPENDENT = {"data/05_model_input/model_input_table.parquet"}


def _outs(lock: dict) -> dict[str, str]:
    """Output hashes of the data stages (training is tracked by MLflow, not reproduced here)."""
    return {
        out["path"]: out["md5"]
        for name, stage in lock["stages"].items()
        if name in DATA_STAGES
        for out in stage.get("outs", [])
    }


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files git knows (tracked, or new and not ignored), as a clone would have them."""
    copy = copy_git_files(tmp_path_factory.mktemp("fresh") / "repo")
    _run(["git", "init", "-q"], copy)
    return copy


def test_repro_gives_the_committed_hashes_then_has_nothing_to_do(fresh_copy: Path):
    committed = yaml.safe_load((fresh_copy / "dvc.lock").read_text())
    assert not (fresh_copy / "data/05_model_input/model_input_table.parquet").exists()

    _run([sys.executable, "-m", "dvc", "repro", "data_processing"], fresh_copy)
    reproduced = yaml.safe_load((fresh_copy / "dvc.lock").read_text())
    exact = {k: v for k, v in _outs(reproduced).items() if k not in CPU_DEPENDENT}
    assert exact == {k: v for k, v in _outs(committed).items() if k not in CPU_DEPENDENT}, (
        "outputs differ from the committed dvc.lock"
    )
    assert set(_outs(committed)) >= CPU_DEPENDENT
    assert set(_outs(reproduced)) >= CPU_DEPENDENT

    second = _run([sys.executable, "-m", "dvc", "repro", "data_processing"], fresh_copy)
    assert "Running stage" not in second
    status = _run([sys.executable, "-m", "dvc", "status", "data_processing"], fresh_copy)
    assert "up to date" in status


def test_local_default_remote_pushes_and_pulls(fresh_copy: Path):
    table = fresh_copy / "data/05_model_input/model_input_table.parquet"
    if not table.exists():
        _run([sys.executable, "-m", "dvc", "repro", "data_processing"], fresh_copy)
    original = table.read_bytes()
    _run([sys.executable, "-m", "dvc", "push"], fresh_copy)
    assert any((fresh_copy / ".dvc-remote").rglob("*"))
    table.unlink()
    shutil.rmtree(fresh_copy / ".dvc" / "cache")
    _run([sys.executable, "-m", "dvc", "pull"], fresh_copy)
    assert table.read_bytes() == original
