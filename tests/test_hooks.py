"""What the project hook shows kedro-mlflow before each node."""

from __future__ import annotations

from pydantic import BaseModel

from credit_scoring.hooks import ProjectHooks


class Section(BaseModel):
    cv_folds: int = 3


def test_each_parameter_section_is_shown_once_per_run_as_a_mapping():
    hooks = ProjectHooks()
    hooks.before_pipeline_run()
    first = {"params:data_science": Section(), "params:data_contract": {"a": 1}, "table": 0}
    hooks.before_node_run(first)
    assert first["params:data_science"] == {"cv_folds": 3}  # flattened by kedro-mlflow
    second = {"params:data_science": Section(), "params:monitoring": {"b": 2}, "table": 0}
    hooks.before_node_run(second)
    # logged already in this run: not sent again (one request per key to a tracking server)
    assert second == {"params:monitoring": {"b": 2}, "table": 0}
    hooks.before_pipeline_run()  # the next run logs everything again
    third = {"params:data_science": Section()}
    hooks.before_node_run(third)
    assert third == {"params:data_science": {"cv_folds": 3}}
