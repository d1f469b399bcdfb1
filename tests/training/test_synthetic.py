"""The synthetic Home-Credit-shaped generator."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from credit_scoring.cli import cli
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.config.synthetic import SyntheticParams
from credit_scoring.training.synthetic import (
    DAYS_EMPLOYED_SENTINEL,
    GENERATED_FILES,
    chunks,
    generate,
    load_params,
    write,
    write_chunks,
)

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


# --- written in chunks: memory follows chunk_applications, not n_applications -----------------


def test_the_default_tables_are_byte_for_byte_those_dvc_lock_records(tmp_path: Path) -> None:
    """The embedded defaults fit in one chunk: the chunked writer gives the very files the
    generator stage recorded (so `dvc repro` sees nothing to do)."""
    params = load_params(PROJECT_ROOT / "conf/base/parameters_synthetic.yml")
    assert params.n_applications <= params.chunk_applications
    paths, _ = write_chunks(chunks(params), tmp_path)
    lock = yaml.safe_load((PROJECT_ROOT / "dvc.lock").read_text())
    recorded = {
        Path(out["path"]).name: out["md5"]
        for out in lock["stages"]["generate_synthetic_data"]["outs"]
    }
    assert {p.name for p in paths} == set(GENERATED_FILES) == set(recorded)
    for path in paths:
        assert hashlib.md5(path.read_bytes()).hexdigest() == recorded[path.name], path.name


def test_chunks_make_one_population() -> None:
    whole = SyntheticParams(n_applications=5000, seed=3, chunk_applications=1000)
    parts = list(chunks(whole))
    assert len(parts) == 5
    tables = generate(whole)
    truth, bureau = tables["true_default_probability"], tables["bureau"]
    ids = truth["SK_ID_CURR"]
    assert ids.is_unique and ids.tolist() == list(range(100_002, 100_002 + 5000))
    assert bureau["SK_ID_BUREAU"].is_unique and bureau["SK_ID_CURR"].isin(ids).all()
    assert set(tables["application_train"]["SK_ID_CURR"]) == set(ids)
    # the intercept solved on the first chunk holds the default rate in every chunk
    rates = [p["true_default_probability"]["TRUE_PROBABILITY"].mean() for p in parts]
    assert max(abs(r - whole.default_rate) for r in rates) < 0.01
    # the first chunk is what a one-chunk run of its size gives; the others differ from it
    first = generate(SyntheticParams(n_applications=1000, seed=3))
    pd.testing.assert_frame_equal(parts[0]["bureau"], first["bureau"])
    assert not np.allclose(
        parts[1]["true_default_probability"]["TRUE_PROBABILITY"],
        parts[0]["true_default_probability"]["TRUE_PROBABILITY"],
    )


def test_an_interrupted_write_keeps_the_previous_tables(tmp_path: Path) -> None:
    small = SyntheticParams(n_applications=2000, seed=5, chunk_applications=1000)
    write(generate(SyntheticParams(n_applications=300, seed=1)), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed_after_one_chunk() -> Iterator[dict[str, pd.DataFrame]]:
        parts = chunks(small)
        yield next(parts)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_chunks(killed_after_one_chunk(), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_chunk_below_a_thousand_applications_is_refused() -> None:
    with pytest.raises(ValueError, match="chunk_applications"):
        SyntheticParams(chunk_applications=10)
