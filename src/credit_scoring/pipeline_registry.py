"""Project pipelines, built for the data contract of the active environment.

Only the pipelines a run asks for are built (Kedro tells which: ``kedro run --pipelines
monitoring`` sets them before it reads the registry), so a monitoring run does not import
the training stack (SHAP, matplotlib, Optuna...): seconds saved at every start of the
monitoring CronJob. Without a request (``kedro registry list``, kedro-viz), all are built.
"""

from __future__ import annotations

from kedro.framework.project import pipelines as project_pipelines
from kedro.pipeline import Pipeline

from credit_scoring.config.loader import project_contract
from credit_scoring.core.contract import DataContract

TRAINING = ("data_ingestion", "data_processing", "data_science")


def _training(name: str, contract: DataContract) -> Pipeline:
    from credit_scoring.pipelines import data_ingestion, data_processing, data_science

    if name == "data_ingestion":
        return data_ingestion.create_pipeline(contract)
    if name == "data_processing":
        return data_processing.create_pipeline(contract)
    return data_science.create_pipeline()


def _monitoring() -> Pipeline:
    from credit_scoring.pipelines import monitoring

    return monitoring.create_pipeline()


def _batch_scoring() -> Pipeline:
    from credit_scoring.pipelines import batch_scoring

    return batch_scoring.create_pipeline()


def register_pipelines() -> dict[str, Pipeline]:
    requested = getattr(project_pipelines, "_requested_pipelines", None)
    names = set(
        requested or [*TRAINING, "__default__", "retraining", "monitoring", "batch_scoring"]
    )
    built: dict[str, Pipeline] = {}
    if names & {*TRAINING, "__default__", "retraining"}:
        contract = project_contract()  # read once for every pipeline built from it
        whole = names & {"__default__", "retraining"}
        training = {n: _training(n, contract) for n in TRAINING if whole or n in names}
        built.update({n: p for n, p in training.items() if n in names})
        # "retraining" is what the retrain trigger runs: the training pipelines on the newest
        # data snapshot, ending at the registry gate (the default, named for its use)
        built.update(dict.fromkeys(whole, sum(training.values(), Pipeline([]))))
    if "monitoring" in names:
        built["monitoring"] = _monitoring()
    # Not part of __default__: it scores with the champion, which a training run may just
    # have replaced (or not: the gate decides), and it runs on its own schedule (nightly).
    if "batch_scoring" in names:
        built["batch_scoring"] = _batch_scoring()
    return built
