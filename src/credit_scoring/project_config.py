"""Read the project's configuration outside a node (pipeline registry, API start-up)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader

from credit_scoring.contracts import DataContract, load_contract

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_active_loader: Any = None


def remember_config_loader(loader: Any) -> None:
    """Called by a hook once Kedro has built the config loader of the running session."""
    global _active_loader
    _active_loader = loader


def config_loader(env: str | None = None, conf_source: Path | None = None) -> Any:
    """The running session's loader, else one for ``env`` (default: $KEDRO_ENV or local)."""
    if _active_loader is not None and env is None and conf_source is None:
        return _active_loader
    return OmegaConfigLoader(
        conf_source=str(conf_source or PROJECT_ROOT / "conf"),
        env=env or os.environ.get("KEDRO_ENV"),
        base_env="base",
        default_run_env="local",
    )


def project_parameters(env: str | None = None, conf_source: Path | None = None) -> dict[str, Any]:
    return dict(config_loader(env, conf_source)["parameters"])


def project_contract(env: str | None = None, conf_source: Path | None = None) -> DataContract:
    return load_contract(project_parameters(env, conf_source)["data_contract"])
