"""Read the project's configuration outside a node (pipeline registry, API start-up)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from credit_scoring.config import CONFIG_LOADER_ARGS, ProjectConfigLoader
from credit_scoring.core.contract import DataContract, load_contract

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_active_loader: Any = None
_active_project: Path | None = None


def remember_context(context: Any) -> None:
    """Called by a hook once Kedro has built the context of the running session."""
    global _active_loader, _active_project
    _active_loader = context.config_loader
    _active_project = Path(context.project_path)


def active_project_dir() -> Path:
    """The running session's project folder (Kedro resolves relative paths against it)."""
    return _active_project or Path.cwd()


def config_loader(env: str | None = None, conf_source: Path | None = None) -> Any:
    """The running session's loader, else one for ``env`` (default: $KEDRO_ENV or local)."""
    if _active_loader is not None and env is None and conf_source is None:
        return _active_loader
    return ProjectConfigLoader(
        conf_source=str(conf_source or PROJECT_ROOT / "conf"),
        env=env or os.environ.get("KEDRO_ENV"),
        **CONFIG_LOADER_ARGS,
    )


def project_parameters(env: str | None = None, conf_source: Path | None = None) -> dict[str, Any]:
    return dict(config_loader(env, conf_source)["parameters"])


def project_contract(env: str | None = None, conf_source: Path | None = None) -> DataContract:
    return load_contract(project_parameters(env, conf_source)["data_contract"])
