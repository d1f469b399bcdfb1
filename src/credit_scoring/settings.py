"""Kedro project settings."""

import os

from credit_scoring.config import CONFIG_LOADER_ARGS as _LOADER_ARGS
from credit_scoring.config import ProjectConfigLoader
from credit_scoring.hooks import ProjectHooks

HOOKS = (ProjectHooks(),)


def _mlflow_uri(default: str) -> str:
    # MLFLOW_TRACKING_URI points the same project at an MLflow server.
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def _serving_db() -> str:
    # CREDIT_SCORING_DATABASE_URL points the pipeline and the API at the same database;
    # without it, the project's data/09_serving/serving.db (absolute, like `make serve`'s).
    from credit_scoring.core.store import database_url
    from credit_scoring.project_config import active_project_dir

    return database_url(active_project_dir())


CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    **_LOADER_ARGS,
    "custom_resolvers": {"mlflow_uri": _mlflow_uri, "serving_db": _serving_db},
}
