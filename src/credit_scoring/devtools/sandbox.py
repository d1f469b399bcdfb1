"""Throw-away copies of the project, for tests and benchmarks that run a real `kedro run`.

The copy holds the configuration and an empty data tree; the code is the installed package,
so a run in the copy never touches this checkout's data, MLflow store or logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.training.privacy import KEY_ENV_VAR

DATA_LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)


def make_project_copy(root: Path) -> Path:
    """Copy conf/ (without credentials), pyproject.toml and .telemetry into ``root``."""
    shutil.copytree(
        PROJECT_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("credentials.yml")
    )
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    (root / "src").mkdir()  # Kedro wants the folder; the code is the installed package
    for layer in DATA_LAYERS:
        (root / "data" / layer).mkdir(parents=True, exist_ok=True)
    return root


def quick_training(
    root: Path, n_trials: int = 3, sample_size: int = 200, **overrides: dict[str, Any]
) -> None:
    """Make the copy's training quick: dummy + LightGBM only (at a few thousand rows a
    logistic regression may win, and the usual champion is what is tested), a short search,
    small explanations. ``overrides``: more keys per section, e.g. ``search={"timeout_s": 30}``,
    ``explanations={"permutation_repeats": 1}``."""
    path = root / "conf/base/parameters_data_science.yml"
    params = yaml.safe_load(path.read_text())
    science = params["data_science"]
    science["candidates"].pop("logistic_regression", None)
    search = science["candidates"]["lightgbm"]["search"]
    search.update(n_trials=n_trials, **overrides.get("search", {}))
    science["explanations"].update(sample_size=sample_size, **overrides.get("explanations", {}))
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def kedro_run(
    project: Path,
    *args: str,
    key: str | None = None,
    check: bool = False,
    timeout: float = 3600,
    environ: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`kedro run ARGS` in ``project`` with telemetry off and the embedded MLflow store.

    ``key`` sets the pseudonymisation key; None runs without one (the development key, or a
    refusal where it is not allowed). The run uses the project's own stores: no
    ``CREDIT_SCORING_*`` or ``MLFLOW_*`` setting of the calling process reaches it (a test
    session's service database would otherwise receive this project's client features).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CREDIT_SCORING_") and "MLFLOW_" not in k
    }
    env.update(DO_NOT_TRACK="1", KEDRO_DISABLE_TELEMETRY="1")
    if key:
        env[KEY_ENV_VAR] = key
    env.update(environ or {})  # what the caller sets on purpose (a given database, say)
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )
