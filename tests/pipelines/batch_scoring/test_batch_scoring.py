"""Batch scoring: the nodes, the idempotent writes, and a real `kedro run --pipeline
batch_scoring` on the session's trained project, scored like the API scores (to 1e-9), on
pandas and on Spark (mapInPandas, local[2])."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from credit_scoring.config.batch_scoring import BatchScoringParams
from credit_scoring.config.checks import ConfigurationError, check_parameters
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools.sandbox import kedro_run
from credit_scoring.pipelines.batch_scoring.nodes import (
    BatchInputError,
    build_prediction_events,
    check_pseudonyms,
    score_clients,
    tabulate_scores,
)
from credit_scoring.storage.batch import (
    SCORE_COLUMNS,
    batch_event_id,
    read_batch_scores,
    record_batch_events,
    replace_batch_scores,
)
from credit_scoring.storage.events import read_events

PSEUDONYM = "ab" * 32


# --- configuration ---------------------------------------------------------------------------


def test_the_section_is_typed_and_a_mistake_names_key_and_file(parameters: dict[str, Any]):
    typed = check_parameters(parameters, ["batch_scoring"], [PROJECT_ROOT / "conf/base"])
    assert isinstance(typed["batch_scoring"], BatchScoringParams)
    broken = copy.deepcopy(parameters)
    broken["batch_scoring"].update(chunk_sise=10, chunk_size=0, run_id="no spaces/here")
    with pytest.raises(ConfigurationError) as error:
        check_parameters(broken, ["batch_scoring"], [PROJECT_ROOT / "conf/base"])
    message = str(error.value)
    for key in ("batch_scoring.chunk_sise", "batch_scoring.chunk_size", "batch_scoring.run_id"):
        assert key in message
    assert "conf/base/parameters_batch_scoring.yml" in message


def test_run_id_defaults_to_the_date_and_takes_a_yaml_date() -> None:
    import datetime as dt

    now = dt.datetime(2026, 12, 1, 23, 59)
    assert BatchScoringParams().resolved_run_id(now) == "2026-12-01"
    assert BatchScoringParams(run_id=dt.date(2026, 1, 2)).run_id == "2026-01-02"  # type: ignore[arg-type]


# --- nodes and storage, without a model --------------------------------------------------------


def test_raw_ids_are_refused_without_being_shown() -> None:
    check_pseudonyms(pd.Series([PSEUDONYM, "0" * 64]))
    with pytest.raises(BatchInputError, match="2 row") as error:
        check_pseudonyms(pd.Series([PSEUDONYM, "100002", None]))
    assert "100002" not in str(error.value)


def test_a_table_with_the_raw_id_column_is_refused(contract: Any) -> None:
    table = pd.DataFrame({contract.id_column: [1], contract.pseudonymised_id_column: [PSEUDONYM]})
    with pytest.raises(BatchInputError, match=contract.id_column):
        score_clients(table, scorer=None, data_contract=contract, params=BatchScoringParams())  # type: ignore[arg-type]


def _scored(n: int, run_id: str = "r1", version: str = "3") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    probability = rng.random(n)
    return pd.DataFrame(
        {
            "client_id": [f"{i:064x}" for i in range(n)],
            "probability": probability,
            "decision": np.where(probability >= 0.5, "refuse", "accept"),
            "features": [f'{{"AMT_CREDIT": {i}.5, "NAME": null}}' for i in range(n)],
            "run_id": run_id,
            "model_name": "credit_scoring",
            "model_version": version,
            "threshold": 0.5,
            "mlflow_run_id": "abc",
            "scored_at": pd.Timestamp("2026-12-01 02:00:00"),
        }
    )


def test_writes_are_idempotent_per_run_and_version(db_url: str) -> None:
    scored = _scored(50)
    tables = tabulate_scores(scored)
    assert list(tables["file"].columns) == SCORE_COLUMNS
    assert "features" not in tables["table"]
    events = build_prediction_events(scored, BatchScoringParams())
    assert (events["source"] == "batch").all() and (events["endpoint"] == "batch_scoring").all()
    assert events["event_id"].iloc[0] == batch_event_id("r1", "credit_scoring", "3", "0" * 64)
    for attempt in range(2):  # a re-run of the same run and version
        replace_batch_scores(db_url, tables["table"])
        added = record_batch_events(db_url, events)
        assert added == (50 if attempt == 0 else 0)
    assert len(read_batch_scores(db_url, "r1")) == 50
    stored = read_events(db_url)
    assert len(stored) == 50 and set(stored["source"]) == {"batch"}
    assert set(stored["request_id"]) == {"batch-r1"}
    # another version in the same run, and a new run, are new scores and new events
    replace_batch_scores(db_url, tabulate_scores(_scored(50, version="4"))["table"])
    replace_batch_scores(db_url, tabulate_scores(_scored(10, run_id="r2"))["table"])
    assert (
        record_batch_events(
            db_url, build_prediction_events(_scored(10, "r2"), BatchScoringParams())
        )
        == 10
    )
    assert len(read_batch_scores(db_url)) == 110
    # a re-run with fewer clients replaces the run's rows (no stale score is left)
    replace_batch_scores(db_url, tabulate_scores(_scored(5, run_id="r2"))["table"])
    assert len(read_batch_scores(db_url, "r2")) == 5


def test_no_events_when_they_are_off() -> None:
    events = build_prediction_events(_scored(5), BatchScoringParams(record_events=False))
    assert events.empty and "source" in events.columns


# --- the real thing: the trained project ---------------------------------------------------


def _api_scorer(bento_model: str) -> Any:
    """The scorer exactly as the service builds it from the bento (`make build`)."""
    import bentoml

    from credit_scoring.core.spec import SPEC_FILE, ServingSpec
    from credit_scoring.serving.scorer import Scorer

    stored = bentoml.models.get(bento_model)
    return Scorer(ServingSpec.load(stored.path_of(SPEC_FILE)), Path(stored.path))


@pytest.fixture(scope="session")
def batch_db(trained_project: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the trained project's database: the batch events stay out of the one the
    other tests of the session count events in."""
    path = tmp_path_factory.mktemp("batch") / "serving.db"
    shutil.copyfile(trained_project / "data/09_serving/serving.db", path)
    return f"sqlite:///{path}"


def _kedro(project: Path, database: str, *args: str) -> subprocess.CompletedProcess[str]:
    tracking = f"sqlite:///{project / 'mlflow.db'}"
    environ = {"CREDIT_SCORING_DATABASE_URL": database, "MLFLOW_TRACKING_URI": tracking}
    return kedro_run(project, *args, timeout=900, environ=environ)


@pytest.fixture(scope="session")
def batch_run(trained_project: Path, batch_db: str) -> dict[str, Any]:
    args = ("--pipeline", "batch_scoring", "--params", "batch_scoring.run_id=nightly-1")
    first = _kedro(trained_project, batch_db, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    parquet = trained_project / "data/07_model_output/batch_scores.parquet"
    return {
        "scores": pd.read_parquet(parquet),
        "table": read_batch_scores(batch_db, "nightly-1"),
        "events": read_events(batch_db),
        "args": args,
    }


def test_a_batch_run_scores_every_client_like_the_api(
    batch_run: dict[str, Any], client_features: pd.DataFrame, bento_model: str, batch_db: str
) -> None:
    from credit_scoring.storage.clients import ClientFeatureStore

    scores = batch_run["scores"]
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == len(client_features) > 1000
    assert set(scores["client_id"]) == set(client_features["client_id"])
    assert scores["client_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(scores["run_id"]) == {"nightly-1"}
    # the API's path: GET /clients/{id}/score reads the store record and calls probability()
    scorer = _api_scorer(bento_model)
    store = ClientFeatureStore(batch_db, "client_id")
    try:
        api = {}
        for client in scores["client_id"]:
            found = store.lookup(client)
            assert found is not None
            api[client] = scorer.probability(found[0])
    finally:
        store.close()
    expected = scores["client_id"].map(api).to_numpy(dtype=float)
    np.testing.assert_allclose(scores["probability"].to_numpy(), expected, rtol=0, atol=1e-9)
    assert (scores["decision"] == [scorer.decision(p) for p in expected]).all()
    assert set(scores["model_version"]) == {scorer.spec.model_version}
    # the same rows in the database
    table = batch_run["table"].set_index("client_id").loc[scores["client_id"]]
    np.testing.assert_array_equal(table["probability"].to_numpy(), scores["probability"].to_numpy())


def test_the_events_are_the_apis_with_a_batch_source(batch_run: dict[str, Any]) -> None:
    import orjson

    events, scores = batch_run["events"], batch_run["scores"]
    batch = events[events["source"] == "batch"]
    assert len(batch) == len(scores) and batch["event_id"].is_unique
    assert set(batch["endpoint"]) == {"batch_scoring"}
    features = batch["features"].iloc[0]
    features = orjson.loads(features) if isinstance(features, str) else features
    assert "client_id" not in features and "observed_at" not in features
    assert "AMT_CREDIT" in features


def test_a_rerun_of_the_same_run_adds_nothing(
    batch_run: dict[str, Any], trained_project: Path, batch_db: str
) -> None:
    again = _kedro(trained_project, batch_db, *batch_run["args"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(read_events(batch_db)) == len(batch_run["events"])
    table = read_batch_scores(batch_db, "nightly-1")
    assert len(table) == len(batch_run["table"])
    np.testing.assert_array_equal(
        table.sort_values("client_id")["probability"].to_numpy(),
        batch_run["table"].sort_values("client_id")["probability"].to_numpy(),
    )


def test_spark_maps_the_same_scorer_to_the_same_numbers(
    spark: Any, client_features: pd.DataFrame, bento_model: str, contract: Any
) -> None:
    scorer = _api_scorer(bento_model)
    params = BatchScoringParams(run_id="spark", chunk_size=700, partitions=2)
    on_pandas = score_clients(client_features, scorer, contract, params)
    on_spark = score_clients(spark.createDataFrame(client_features), scorer, contract, params)
    merged = on_pandas.merge(on_spark, on="client_id", suffixes=("_pd", "_spark"))
    assert len(merged) == len(on_pandas) == len(on_spark) == len(client_features)
    np.testing.assert_allclose(
        merged["probability_spark"], merged["probability_pd"], rtol=0, atol=1e-9
    )
    assert (merged["decision_spark"] == merged["decision_pd"]).all()
    assert (merged["features_spark"] == merged["features_pd"]).all()


def test_the_monitoring_reads_batch_events(
    batch_run: dict[str, Any], trained_project: Path, batch_db: str
) -> None:
    """`kedro run --pipeline monitoring` on the batch's events: a drift verdict, the window's
    events counted by source (api, batch)."""
    import json

    # the default watches the API's events only: an environment adds the batch's
    env = trained_project / "conf" / "watch_batch"
    env.mkdir(exist_ok=True)
    (env / "parameters_monitoring.yml").write_text(
        "monitoring:\n  window:\n    sources: [api, batch]\n"
    )
    monitored = _kedro(
        trained_project, batch_db, "--pipeline", "monitoring", "--env", "watch_batch"
    )
    assert monitored.returncode == 0, monitored.stdout[-3000:] + monitored.stderr[-3000:]
    folder = trained_project / "data/08_reporting/monitoring/summary.json"
    newest = max(folder.iterdir(), key=lambda p: p.name)
    summary = json.loads((newest / "summary.json").read_text())
    window = summary["window"]
    assert summary["status"] == "ok" and summary["drift"] is not None
    # the newest events are the batch's (API events of earlier tests may precede them)
    assert window["sources"]["batch"] == min(len(batch_run["scores"]), window["events"])
    assert window["sources"]["batch"] + window["sources"]["api"] == window["events"]
