"""Batch scoring nodes: score a table of known clients with the champion, then shape the
scores for the Parquet file and the database, and the prediction events for the monitoring.

One function scores a chunk (``ChunkScorer``): the pandas engine calls it once per
``chunk_size`` rows, the Spark engine once per Arrow batch (``mapInPandas``). It scores with
the API's own ``Scorer`` (row transformer, booster, threshold), vectorised over the chunk, so
a client gets the probability the API would give it to the bit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
import pandas as pd

from credit_scoring.config.batch_scoring import BatchScoringParams
from credit_scoring.core.contract import DataContract
from credit_scoring.engines.batches import map_batches
from credit_scoring.serving.schemas import CLIENT_ID_PATTERN
from credit_scoring.serving.scorer import Scorer
from credit_scoring.storage.batch import (
    BATCH_ENDPOINT,
    BATCH_SOURCE,
    SCORE_COLUMNS,
    batch_event_id,
)
from credit_scoring.storage.clients import OBSERVED_AT
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.schema import events_table, row_columns

logger = logging.getLogger(__name__)

# What one chunk gives back (also the Spark schema of mapInPandas' output).
SCORED_SCHEMA = "client_id string, probability double, decision string, features string"
SCORED_COLUMNS = ["client_id", "probability", "decision", "features"]


class BatchInputError(ValueError):
    """The table to score cannot be scored as it is; the message says what to change."""


def check_pseudonyms(ids: pd.Series) -> None:
    """Refuse ids that are not pseudonyms: the outputs must never carry a raw client id."""
    ok = ids.astype(str).str.fullmatch(CLIENT_ID_PATTERN.strip("^$"))
    if not ok.all():
        raise BatchInputError(
            f"{int((~ok).sum())} row(s) of the table to score have a client id that is not a "
            "pseudonym (64 lowercase hex characters). Batch scoring writes pseudonyms only: "
            "score the client feature store, or a table pseudonymised like it (data_ingestion)."
        )


def feature_json(features: pd.DataFrame) -> list[str]:
    """Each row's features as the API stores them in an event: JSON, null for missing."""
    return [
        orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS).decode()
        for row in features.to_dict(orient="records")
    ]


@dataclass(frozen=True)
class ChunkScorer:
    """Scores one chunk of clients: pseudonym, probability, decision (and features as JSON
    when events are recorded). Picklable, so Spark ships it to its Python workers."""

    scorer: Scorer
    id_column: str
    num_threads: int = 1
    with_features: bool = True

    def __call__(self, chunk: pd.DataFrame) -> pd.DataFrame:
        if chunk.empty:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in SCORED_COLUMNS})
        ids = chunk[self.id_column]
        check_pseudonyms(ids)
        features = chunk.drop(columns=[c for c in (self.id_column, OBSERVED_AT) if c in chunk])
        probabilities = self.scorer.probabilities_frame(features, self.num_threads)
        return pd.DataFrame(
            {
                "client_id": ids.astype(str).to_numpy(),
                "probability": probabilities,
                "decision": self.scorer.decisions(probabilities),
                "features": feature_json(features) if self.with_features else None,
            }
        )


def score_clients(
    clients: Any, scorer: Scorer, data_contract: DataContract, params: BatchScoringParams
) -> pd.DataFrame:
    """Score every row of ``clients`` (a pandas or a Spark DataFrame: the catalog chooses the
    engine) with the champion; one row per client with the run's and the model's names."""
    id_column = data_contract.pseudonymised_id_column
    columns = list(clients.columns)
    if data_contract.id_column and data_contract.id_column in columns:
        raise BatchInputError(
            f"The table to score has the raw client id column '{data_contract.id_column}': "
            f"batch scoring reads pseudonymised tables only ('{id_column}'), e.g. the client "
            "feature store (catalog entry batch_scoring_input)."
        )
    if id_column not in columns:
        raise BatchInputError(
            f"The table to score has no '{id_column}' column (data_contract."
            "pseudonymised_id_column): point batch_scoring_input at the client feature store "
            "or a table keyed by the pseudonym."
        )
    chunk = ChunkScorer(scorer, id_column, params.num_threads, params.record_events)
    started = time.perf_counter()
    if isinstance(clients, pd.DataFrame):
        size = params.chunk_size
        parts = [chunk(clients.iloc[i : i + size]) for i in range(0, len(clients), size)]
        scored = pd.concat(parts, ignore_index=True) if parts else chunk(clients.iloc[:0])
    else:
        # one booster thread per Spark task: Spark already runs one task per core
        mapped = map_batches(
            clients,
            replace(chunk, num_threads=1),
            schema=SCORED_SCHEMA,
            batch_rows=params.chunk_size,
            partitions=params.partitions,
        )
        scored = mapped.toPandas()
    if scored["client_id"].duplicated().any():
        raise BatchInputError(
            f"The table to score has {int(scored['client_id'].duplicated().sum())} repeated "
            "client id(s): one row per client (the client feature store keeps the latest)."
        )
    seconds = time.perf_counter() - started
    now = utc_now()
    spec = scorer.spec
    logger.info(
        "Scored %d clients with %s v%s in %.1f s (%.0f per second)",
        len(scored),
        spec.model_name,
        spec.model_version,
        seconds,
        len(scored) / seconds if seconds else 0.0,
    )
    return scored.assign(
        run_id=params.resolved_run_id(now),
        model_name=spec.model_name,
        model_version=spec.model_version,
        threshold=spec.threshold,
        mlflow_run_id=spec.run_id,
        scored_at=now,
    )


def tabulate_scores(scored: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The scores alone (no features): for the Parquet file and the ``batch_scores`` table."""
    scores = scored[SCORE_COLUMNS].reset_index(drop=True)
    return {"file": scores, "table": scores}


def build_prediction_events(scored: pd.DataFrame, params: BatchScoringParams) -> pd.DataFrame:
    """One prediction event per client, as the API writes them, with source 'batch' and an
    event id derived from (run, model version, client): a re-run adds none twice."""
    columns = row_columns(events_table)
    if not params.record_events or scored.empty:
        return pd.DataFrame(columns=columns)
    first = scored.iloc[0]
    run_id, name, version = (
        str(first["run_id"]),
        str(first["model_name"]),
        str(first["model_version"]),
    )
    events = pd.DataFrame(
        {
            "event_id": [batch_event_id(run_id, name, version, c) for c in scored["client_id"]],
            "event_time": scored["scored_at"],
            "request_id": f"batch-{run_id}",
            "endpoint": BATCH_ENDPOINT,
            "client_id": scored["client_id"],
            "model_name": name,
            "model_version": version,
            "features": scored["features"],
            "probability": scored["probability"],
            "decision": scored["decision"],
            "threshold": scored["threshold"],
            "mlflow_run_id": scored["mlflow_run_id"],
            "image": None,
            "source": BATCH_SOURCE,
        }
    )
    return events[columns]
