"""The direction of the arrows: pipelines -> core <- serving, enforced by import-linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from credit_scoring.config.loader import PROJECT_ROOT


def _lint_imports(src: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def src_copy(tmp_path: Path) -> Path:
    shutil.copytree(
        PROJECT_ROOT / "src" / "credit_scoring",
        tmp_path / "src" / "credit_scoring",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path / "src"


def test_the_service_imports_nothing_of_training(src_copy: Path, tmp_path: Path):
    result = _lint_imports(src_copy, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "forbidden"),
    [
        (
            "serving/scorer.py",
            "from credit_scoring.training.modeling import business_cost",
            "modeling",
        ),
        ("serving/service.py", "import optuna", "optuna"),
        ("core/features.py", "import mlflow", "mlflow"),
        ("core/store.py", "from credit_scoring.serving import http", "credit_scoring.serving"),
        # the dashboard asks the API: no database, no model, no service internals
        ("dashboard/views.py", "import sqlalchemy", "sqlalchemy"),
        (
            "dashboard/api.py",
            "from credit_scoring.storage.events import read_events",
            "credit_scoring.storage",
        ),
        ("dashboard/present.py", "import lightgbm", "lightgbm"),
    ],
)
def test_a_change_that_imports_training_code_fails_lint(
    src_copy: Path, tmp_path: Path, module: str, line: str, forbidden: str
):
    target = src_copy / "credit_scoring" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(src_copy, tmp_path)
    assert result.returncode != 0
    assert "broken" in result.stdout and forbidden in result.stdout
