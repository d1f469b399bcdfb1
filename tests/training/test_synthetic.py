"""The synthetic Home-Credit-shaped generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from credit_scoring.cli import cli
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.training.synthetic import DAYS_EMPLOYED_SENTINEL, generate

# Columns of Kaggle's application_train.csv / bureau.csv that the generator writes.
HOME_CREDIT_APPLICATION_COLUMNS = {
    "SK_ID_CURR",
    "TARGET",
    "NAME_CONTRACT_TYPE",
    "CODE_GENDER",
    "FLAG_OWN_CAR",
    "FLAG_OWN_REALTY",
    "CNT_CHILDREN",
    "AMT_INCOME_TOTAL",
    "AMT_CREDIT",
    "AMT_ANNUITY",
    "AMT_GOODS_PRICE",
    "NAME_INCOME_TYPE",
    "NAME_EDUCATION_TYPE",
    "NAME_FAMILY_STATUS",
    "NAME_HOUSING_TYPE",
    "REGION_POPULATION_RELATIVE",
    "DAYS_BIRTH",
    "DAYS_EMPLOYED",
    "DAYS_REGISTRATION",
    "DAYS_ID_PUBLISH",
    "OWN_CAR_AGE",
    "FLAG_MOBIL",
    "OCCUPATION_TYPE",
    "CNT_FAM_MEMBERS",
    "REGION_RATING_CLIENT",
    "EXT_SOURCE_1",
    "EXT_SOURCE_2",
    "EXT_SOURCE_3",
    "OBS_30_CNT_SOCIAL_CIRCLE",
    "DEF_30_CNT_SOCIAL_CIRCLE",
    "OBS_60_CNT_SOCIAL_CIRCLE",
    "COMMONAREA_AVG",
    "DAYS_LAST_PHONE_CHANGE",
    "AMT_REQ_CREDIT_BUREAU_YEAR",
}
HOME_CREDIT_BUREAU_COLUMNS = {
    "SK_ID_CURR",
    "SK_ID_BUREAU",
    "CREDIT_ACTIVE",
    "CREDIT_CURRENCY",
    "DAYS_CREDIT",
    "CREDIT_DAY_OVERDUE",
    "DAYS_CREDIT_ENDDATE",
    "AMT_CREDIT_MAX_OVERDUE",
    "CNT_CREDIT_PROLONG",
    "AMT_CREDIT_SUM",
    "AMT_CREDIT_SUM_DEBT",
    "AMT_CREDIT_SUM_OVERDUE",
    "CREDIT_TYPE",
}

PARAMS = SyntheticParams(n_applications=20_000, seed=11)


def test_same_seed_same_tables_other_seed_other_tables():
    small = SyntheticParams(n_applications=500, seed=5)
    first, again = generate(small), generate(small)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    other = generate(small.model_copy(update={"seed": 6}))
    assert not first["application_train"].equals(other["application_train"])


def test_schema_is_a_subset_of_home_credit():
    tables = generate(SyntheticParams(n_applications=300))
    assert (
        set(tables["application_train"].columns) - {"APPLICATION_REF"}
        <= HOME_CREDIT_APPLICATION_COLUMNS
    )
    assert set(tables["bureau"].columns) == HOME_CREDIT_BUREAU_COLUMNS


def test_realistic_shape_and_mess():
    tables = generate(PARAMS)
    apps, bureau = tables["application_train"], tables["bureau"]
    unique = apps.drop_duplicates("SK_ID_CURR")
    assert 0.065 < unique["TARGET"].mean() < 0.095
    assert apps.duplicated().sum() > 0
    assert (apps["OBS_60_CNT_SOCIAL_CIRCLE"] == apps["OBS_30_CNT_SOCIAL_CIRCLE"]).all()
    assert 0.5 < apps["EXT_SOURCE_1"].isna().mean() < 0.62
    assert (apps["DAYS_EMPLOYED"] == DAYS_EMPLOYED_SENTINEL).mean() > 0.1
    assert apps["AMT_INCOME_TOTAL"].max() > 20 * apps["AMT_INCOME_TOTAL"].median()
    assert apps["APPLICATION_REF"].nunique() == len(unique)
    per_client = bureau.groupby("SK_ID_CURR").size()
    assert per_client.mean() > 4 and len(per_client) < len(unique)  # some have no history


def test_true_probability_is_known_and_informative():
    tables = generate(PARAMS)
    truth = tables["true_default_probability"]
    labels = tables["application_train"].drop_duplicates("SK_ID_CURR")[["SK_ID_CURR", "TARGET"]]
    merged = labels.merge(truth, on="SK_ID_CURR")
    assert len(merged) == PARAMS.n_applications
    assert merged["TRUE_PROBABILITY"].between(0, 1).all()
    assert "TRUE_PROBABILITY" not in tables["application_train"].columns
    assert roc_auc_score(merged["TARGET"], merged["TRUE_PROBABILITY"]) > 0.75


def test_drift_shifts_the_population():
    base = generate(SyntheticParams(n_applications=5000, seed=2))["application_train"]
    drifted = generate(SyntheticParams(n_applications=5000, seed=2, drift=True))[
        "application_train"
    ]
    assert drifted["AMT_INCOME_TOTAL"].median() > 1.15 * base["AMT_INCOME_TOTAL"].median()
    assert "Gig economy workers" in set(drifted["OCCUPATION_TYPE"])
    assert "Gig economy workers" not in set(base["OCCUPATION_TYPE"])
    assert drifted["EXT_SOURCE_3"].mean() < base["EXT_SOURCE_3"].mean() - 0.04


def test_command_line_writes_the_kaggle_file_names(tmp_path):
    command = ["generate-data", "--n-applications", "200", "--output-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["application_train.csv", "bureau.csv", "true_default_probability.csv"]
    assert len(pd.read_csv(tmp_path / "application_train.csv")) >= 200
    assert np.isfinite(
        pd.read_csv(tmp_path / "true_default_probability.csv")["TRUE_PROBABILITY"]
    ).all()
