"""Kedro project settings."""

import os

from credit_scoring.hooks import ProjectHooks

HOOKS = (ProjectHooks(),)


def _mlflow_uri(default: str) -> str:
    # MLFLOW_TRACKING_URI points the same project at an MLflow server.
    return os.environ.get("MLFLOW_TRACKING_URI") or default


def _serving_db() -> str:
    # CREDIT_SCORING_DATABASE_URL points the pipeline and the API at the same database.
    from credit_scoring.serving.store import database_url

    return database_url()


CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"mlflow_uri": _mlflow_uri, "serving_db": _serving_db},
}
