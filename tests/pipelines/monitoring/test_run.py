"""The monitoring pipeline, run as the monitoring CronJob runs it, loads no training library."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_python

pytestmark = pytest.mark.integration

RUN_MONITORING = """
import json, sys
from pathlib import Path
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.framework.project import pipelines

project = Path(sys.argv[1])
bootstrap_project(project)
pipelines._requested_pipelines = ["monitoring"]  # what `kedro run --pipelines monitoring` sets
with KedroSession.create(project_path=project) as session:
    outputs = session.run(pipeline_names=["monitoring"])
heavy = ("lightgbm", "optuna", "shap", "matplotlib")
print(json.dumps({
    "loaded": sorted(m for m in heavy if m in sys.modules),
    "nodes": "credit_scoring.pipelines.monitoring.nodes" in sys.modules,
    "evidently": "evidently" in sys.modules,
}))
"""


def test_a_monitoring_run_imports_neither_lightgbm_nor_optuna(trained_project: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{trained_project / 'mlflow.db'}"
    env["CREDIT_SCORING_DATABASE_URL"] = (
        f"sqlite:///{trained_project / 'data/09_serving/serving.db'}"
    )
    seen = run_python(RUN_MONITORING, str(trained_project), cwd=trained_project, env=env)
    assert seen["nodes"] and seen["evidently"]  # the pipeline did run its nodes
    assert seen["loaded"] == [], f"a monitoring run imported {seen['loaded']}"
