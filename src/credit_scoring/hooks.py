"""Project hooks: configuration checked at start-up, the Spark session of the Spark engine,
the pseudonymisation key, the pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from pydantic import BaseModel

from credit_scoring.config.checks import check_parameters, pipeline_parameter_keys
from credit_scoring.config.ingestion import load_ingestion
from credit_scoring.config.loader import remember_context
from credit_scoring.config.spark import spark_settings
from credit_scoring.core.contract import load_contract
from credit_scoring.engines.spark import start_session
from credit_scoring.training.privacy import resolve_key

PIPELINES_MODULE = "credit_scoring.pipeline_registry"


class ProjectHooks:
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Check the configuration of the pipelines about to run, before anything runs.

        The pipelines depend on the data contract of the active environment (--env): forget
        pipelines built for another environment earlier in this process.
        """
        remember_context(context)
        loader = context.config_loader
        conf_root = Path(loader.conf_source)
        conf_dirs = [
            conf_root / loader.base_env,
            conf_root / (context.env or loader.default_run_env),
        ]
        parameters = loader["parameters"]  # runtime --params included
        check_parameters(parameters, ["data_contract"], conf_dirs)  # pipelines are built from it
        asked = getattr(pipelines, "_requested_pipelines", None)
        pipelines.configure(PIPELINES_MODULE)  # forgets the request: given back just below
        pipelines.set_requested(asked)  # only what runs is built (pipeline_registry.py)
        requested = asked or ["__default__"]
        keys = pipeline_parameter_keys(pipelines[name] for name in requested if name in pipelines)
        check_parameters(parameters, sorted(keys), conf_dirs)
        try:
            spark = loader["spark"]
        except MissingConfigException:
            return  # no spark.yml in this environment: the pandas engine, no JVM
        start_session(spark_settings(spark, f"spark.yml of {[str(d) for d in conf_dirs]}"))

    def __init__(self) -> None:
        self._params_shown: set[str] = set()

    @hook_impl
    def before_pipeline_run(self) -> None:
        self._params_shown = set()  # a new run: kedro-mlflow logs every section again

    @hook_impl(tryfirst=True)
    def before_node_run(self, inputs: dict[str, Any]) -> None:
        """Show the other hooks (kedro-mlflow logs every ``params:`` input) each section once,
        as a plain mapping.

        Kedro hands the nodes typed sections; kedro-mlflow flattens only dicts, so it would log
        one truncated string per section. It also logs a node's sections before every node,
        one HTTP request per flattened key: against a tracking server that was ~500 keys
        (the data contract alone is 351) for each of 13 nodes, 6,700 requests and 26 minutes
        of a training run, with basic-auth checking a password hash for each. Kedro gives the
        hooks their own copy of the inputs: changing that copy changes what is logged, not what
        the node receives. This hook runs first (tryfirst) so the others see the change.
        """
        for name in [n for n in inputs if n.startswith("params:")]:
            if name in self._params_shown:
                del inputs[name]  # logged already, with the same value, in this run
                continue
            self._params_shown.add(name)
            if isinstance(inputs[name], BaseModel):
                inputs[name] = inputs[name].model_dump(mode="json")

    @hook_impl
    def after_catalog_created(
        self, catalog: Any, conf_creds: dict[str, Any], parameters: dict[str, Any]
    ) -> None:
        # The key lives only in memory: from the environment or conf/<env>/credentials.yml.
        # The development key is refused where data_ingestion.allow_development_key is false.
        # Data without client ids needs no key (and gets no development-key warning).
        # Sections are typed when the pipelines being run read them, mappings otherwise.
        tree = parameters.get("parameters") or {}
        if load_contract(tree["data_contract"]).id_column is None:
            catalog["pseudonymisation_key"] = ""
            return
        ingestion = load_ingestion(tree.get("data_ingestion") or {})
        catalog["pseudonymisation_key"] = resolve_key(
            conf_creds, allow_development_key=ingestion.allow_development_key
        )
