"""The monitoring reference belongs to the version that served the events."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from credit_scoring.config.monitoring import MonitoringParams
from credit_scoring.pipelines.monitoring.nodes import fetch_reference


def test_a_version_without_its_reference_is_refused_with_the_fix(mlflow_store: str) -> None:
    model = DummyClassifier().fit(np.zeros((4, 1)), [0, 1, 0, 1])
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name="credit_scoring",
            metadata={"features": ["x"], "categories": {}, "threshold": 0.5},
        )
    window = pd.DataFrame({"x": [1.0], "model_version": ["1"]})
    with pytest.raises(RuntimeError, match=r"credit_scoring v1 .* has no monitoring/reference"):
        fetch_reference(window, MonitoringParams())
    assert fetch_reference(pd.DataFrame(), MonitoringParams()) == {}
