"""Read the project's configuration, inside a Kedro session or outside one (API start-up).

Environments override only what they change: parameters are merged key by key ("soft"
merge). A mapping that must replace its base counterpart whole (a fork's own data contract)
says so with ``_replace: true``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from credit_scoring.core.contract import DataContract, load_contract

REPLACE_MARKER = "_replace"


def _replace_marked(merged: dict[str, Any], env: Mapping[str, Any]) -> None:
    for key, value in env.items():
        if not isinstance(value, Mapping):
            continue
        if value.get(REPLACE_MARKER):
            merged[key] = {k: v for k, v in value.items() if k != REPLACE_MARKER}
        elif isinstance(merged.get(key), dict):
            _replace_marked(merged[key], value)


def _strip_markers(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _strip_markers(v) for k, v in config.items() if k != REPLACE_MARKER}
    if isinstance(config, list):
        return [_strip_markers(v) for v in config]
    return config


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's loader; its soft merge honours ``_replace: true`` on a mapping of an env."""

    @staticmethod
    def _soft_merge(
        config: dict[str, Any], env_config: dict[str, Any], env_path: str | None = None
    ) -> Any:
        merged: Any = OmegaConf.to_container(OmegaConf.unsafe_merge(config, env_config))
        _replace_marked(merged, env_config)
        return _strip_markers(merged)


CONFIG_LOADER_ARGS: dict[str, Any] = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments override only the keys they name (see the module docstring).
    "merge_strategy": {"parameters": "soft"},
    # The Spark engine's session (conf/spark/spark.yml; conf/base has none: pandas).
    "config_patterns": {"spark": ["spark*", "spark*/**"]},
}


PROJECT_ROOT = Path(__file__).resolve().parents[3]
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


def _mlflow_uri(default: str) -> str:
    # MLFLOW_TRACKING_URI points the same project at an MLflow server.
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def _serving_db() -> str:
    # CREDIT_SCORING_DATABASE_URL points the pipeline and the API at the same database;
    # without it, the project's data/09_serving/serving.db (absolute, like `make serve`'s).
    from credit_scoring.storage.database import database_url

    return database_url(active_project_dir())


# The Kedro settings (settings.py) and every loader made here use these.
LOADER_ARGS: dict[str, Any] = {
    **CONFIG_LOADER_ARGS,
    "custom_resolvers": {"mlflow_uri": _mlflow_uri, "serving_db": _serving_db},
}


def config_loader(env: str | None = None, conf_source: Path | None = None) -> Any:
    """The running session's loader, else one for ``env`` (default: $KEDRO_ENV or local)."""
    if _active_loader is not None and env is None and conf_source is None:
        return _active_loader
    return ProjectConfigLoader(
        conf_source=str(conf_source or PROJECT_ROOT / "conf"),
        env=env or os.environ.get("KEDRO_ENV"),
        **LOADER_ARGS,
    )


def project_parameters(env: str | None = None, conf_source: Path | None = None) -> dict[str, Any]:
    return dict(config_loader(env, conf_source)["parameters"])


def project_contract(env: str | None = None, conf_source: Path | None = None) -> DataContract:
    return load_contract(project_parameters(env, conf_source)["data_contract"])
