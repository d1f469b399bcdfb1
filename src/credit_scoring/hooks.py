"""Project hooks: the pseudonymisation key, and the environment the pipelines are built for."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines

from credit_scoring.privacy import resolve_key
from credit_scoring.project_config import remember_config_loader

PIPELINES_MODULE = "credit_scoring.pipeline_registry"


class ProjectHooks:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        # The pipelines depend on the data contract of the active environment (--env):
        # forget pipelines built for another environment earlier in this process.
        remember_config_loader(context.config_loader)
        pipelines.configure(PIPELINES_MODULE)

    @hook_impl
    def after_catalog_created(
        self, catalog: Any, conf_creds: dict[str, Any], parameters: dict[str, Any]
    ) -> None:
        # The key lives only in memory: from the environment or conf/<env>/credentials.yml.
        # The development key is refused where data_ingestion.allow_development_key is false.
        # `parameters` holds the whole tree under "parameters" (and each "params:<key>").
        ingestion = (parameters.get("parameters") or {}).get("data_ingestion") or {}
        allow_dev = bool(ingestion.get("allow_development_key", False))
        catalog["pseudonymisation_key"] = resolve_key(conf_creds, allow_development_key=allow_dev)
