"""Configuration: typed once, checked before anything runs, merged key by key per environment."""

from __future__ import annotations

import copy
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from credit_scoring.config.checks import (
    ConfigurationError,
    check_parameters,
    pipeline_parameter_keys,
)
from credit_scoring.config.data_science import DataScienceParams
from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.core.contract import DataContract
from credit_scoring.core.processing import ProcessingParams
from credit_scoring.pipelines import data_ingestion, data_processing, data_science

BASE = PROJECT_ROOT / "conf" / "base"
ALL = ["data_contract", "data_ingestion", "data_processing", "data_science", "serving"]


def _check(parameters: dict[str, Any], keys: list[str] = ALL) -> dict[str, Any]:
    return check_parameters(parameters, keys, [BASE])


def _problems(parameters: dict[str, Any], keys: list[str] = ALL) -> str:
    with pytest.raises(ConfigurationError) as error:
        _check(parameters, keys)
    return str(error.value)


def test_the_projects_configuration_is_valid_and_typed(parameters):
    typed = _check(parameters)
    assert isinstance(typed["data_contract"], DataContract)
    assert isinstance(typed["data_processing"], ProcessingParams)
    assert isinstance(typed["data_science"], DataScienceParams)


def test_a_typo_names_the_key_the_problem_and_the_file(parameters):
    broken = copy.deepcopy(parameters)
    broken["data_science"]["cv_foldz"] = 3
    broken["data_science"]["candidates"]["lightgbm"]["search"]["n_trials"] = "many"
    message = _problems(broken)
    assert "2 configuration problem(s)" in message
    assert "data_science.cv_foldz: Extra inputs are not permitted" in message
    assert "data_science.candidates.lightgbm.search.n_trials:" in message
    assert "conf/base/parameters_data_science.yml" in message


@pytest.mark.parametrize(
    ("section", "path", "value", "expected"),
    [
        (
            "data_processing",
            ["outliers", "AMT_INCOM"],
            {"method": "iqr"},
            "data_processing.outliers.AMT_INCOM: 'AMT_INCOM' is not a column of the data "
            "contract (did you mean 'AMT_INCOME_TOTAL'?)",
        ),
        (
            "data_processing",
            ["domain_features", "X"],
            {"op": "ratio", "left": "AMT_CREDIT", "right": "AMT_INCOME"},
            "data_processing.domain_features.X: 'AMT_INCOME' is not a column",
        ),
        (
            "data_processing",
            ["irrelevant_columns", "keep"],
            ["EXT_SOURCE_9"],
            "data_processing.irrelevant_columns.keep: 'EXT_SOURCE_9' is not a column",
        ),
        (
            "data_science",
            ["monotone_increasing"],
            ["BUREAU_OVERDUE"],
            "data_science.monotone_increasing: 'BUREAU_OVERDUE' is not a feature",
        ),
        (
            "data_processing",
            ["secondary_aggregations", "bureau", "aggregations", "DAYS_CREDITT"],
            ["max"],
            "'DAYS_CREDITT' is not a column (did you mean 'DAYS_CREDIT'?)",
        ),
    ],
)
def test_a_name_that_does_not_exist_is_an_error(parameters, section, path, value, expected):
    broken = copy.deepcopy(parameters)
    node = broken[section]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message = _problems(broken)
    assert expected in message
    assert f"conf/base/parameters_{section}.yml" in message


def test_an_imputation_group_matching_no_column_is_an_error(parameters):
    broken = copy.deepcopy(parameters)
    broken["data_processing"]["imputation"][0]["columns"] = ["EXT_SCORE_*"]
    assert "'EXT_SCORE_*' (group 'external_scores') matches no column" in _problems(broken)


def test_a_secondary_table_without_aggregation_is_an_error(parameters):
    broken = copy.deepcopy(parameters)
    del broken["data_processing"]["secondary_aggregations"]["bureau"]
    assert "no entry for the secondary table 'bureau'" in _problems(broken)


def test_only_the_sections_of_the_pipelines_being_run_are_checked(parameters):
    broken = copy.deepcopy(parameters)
    broken["data_science"]["cv_foldz"] = 3
    contract = DataContract.model_validate(parameters["data_contract"])
    ingestion = pipeline_parameter_keys([data_ingestion.create_pipeline(contract)])
    assert ingestion == {"data_contract", "data_ingestion"}
    _check(broken, sorted(ingestion))  # ingestion does not read data_science
    training = pipeline_parameter_keys([data_science.create_pipeline()])
    assert "data_science" in training
    assert "cv_foldz" in _problems(broken, sorted(training))
    processing = pipeline_parameter_keys([data_processing.create_pipeline(contract)])
    assert processing == {"data_contract", "data_processing"}


@pytest.fixture
def conf_copy(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def test_an_environment_overrides_one_key_and_keeps_the_rest(conf_copy: Path, parameters):
    override = textwrap.dedent("""\
        data_science:
          candidates:
            lightgbm:
              search:
                n_trials: 50
    """)
    (conf_copy / "tuned").mkdir()
    (conf_copy / "tuned" / "parameters_data_science.yml").write_text(override)
    merged = project_parameters("tuned", conf_copy)
    assert merged["data_science"]["candidates"]["lightgbm"]["search"]["n_trials"] == 50
    expected = copy.deepcopy(parameters["data_science"])
    expected["candidates"]["lightgbm"]["search"]["n_trials"] = 50
    assert merged["data_science"] == expected  # nothing else was lost
    assert len(override.splitlines()) == 5


def test_replace_marks_a_section_that_replaces_its_base_counterpart(conf_copy: Path):
    merged = project_parameters("example_loans", conf_copy)
    contract = merged["data_contract"]
    assert "_replace" not in contract and contract["id_column"] is None
    assert set(contract["columns"]) == {
        "age",
        "sex",
        "monthly_income",
        "loan_amount",
        "loan_amount_copy",
        "purpose",
        "housing",
        "existing_loans",
    }
    assert "bureau" not in merged["data_processing"]["secondary_aggregations"]
    science = merged["data_science"]  # merged, not replaced: the base candidates are kept
    assert set(science["candidates"]) == {"dummy", "logistic_regression", "lightgbm"}
    assert science["candidates"]["lightgbm"]["fixed"]["n_estimators"] == 120
    assert science["candidates"]["lightgbm"]["fixed"]["n_jobs"] == 2
    _check(merged)


def test_the_model_name_and_experiment_have_one_place(conf_copy: Path):
    from credit_scoring.config.loader import config_loader

    loader = config_loader("example_loans", conf_copy)
    loader.config_patterns["mlflow"] = ["mlflow*", "mlflow*/**"]  # what kedro-mlflow adds
    assert loader["parameters"]["data_science"]["registry"]["model_name"] == "loan_risk"
    assert loader["mlflow"]["tracking"]["experiment"]["name"] == "loan_risk"
    base = config_loader("base", conf_copy)
    assert base["parameters"]["data_science"]["registry"]["model_name"] == "credit_scoring"
