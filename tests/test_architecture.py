"""The direction of the arrows (docs/architecture.md), enforced by import-linter's contracts."""

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


def test_every_contract_is_kept(src_copy: Path, tmp_path: Path):
    result = _lint_imports(src_copy, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Layers: every import points down KEPT" in result.stdout
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # upward imports break the layers
        ("core/features.py", "from credit_scoring.config import loader", "Layers"),
        ("storage/events.py", "from credit_scoring.serving import http", "Layers"),
        ("config/sections.py", "from credit_scoring.training import modeling", "Layers"),
        ("training/modeling.py", "from credit_scoring.pipelines import data_science", "Layers"),
        ("pipelines/data_science/nodes.py", "from credit_scoring.ops import packaging", "Layers"),
        ("auth/tokens.py", "from credit_scoring.core import spec", "Layers"),
        # siblings never import each other
        ("serving/scorer.py", "from credit_scoring.training import metrics", "Layers"),
        ("monitoring/drift.py", "from credit_scoring.serving import telemetry", "Layers"),
        ("ops/smoke.py", "from credit_scoring.devtools import simulate", "Layers"),
        # the service's image carries no training library; the dashboard only talks HTTP
        ("serving/service.py", "import optuna", "imports nothing of training"),
        ("core/features.py", "import mlflow", "imports nothing of training"),
        ("config/monitoring.py", "import lightgbm", "Configuration imports no model"),
        ("dashboard/views.py", "import sqlalchemy", "The dashboard asks the API"),
        ("dashboard/present.py", "import lightgbm", "The dashboard asks the API"),
    ],
)
def test_an_import_against_the_arrows_fails_lint(
    src_copy: Path, tmp_path: Path, module: str, line: str, broken: str
):
    target = src_copy / "credit_scoring" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(src_copy, tmp_path)
    assert result.returncode != 0
    assert any(broken in row and "BROKEN" in row for row in result.stdout.splitlines()), (
        result.stdout[-3000:]
    )
