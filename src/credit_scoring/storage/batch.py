"""Batch scores in the database: the ``batch_scores`` table and the batch's prediction events.

A batch run is identified by its ``run_id`` and scores with one model version. Its rows in
``batch_scores`` are keyed by (run_id, model_name, model_version, client_id) and replaced in
one transaction: a re-run of the same run and version rewrites them, readers never see half a
run. Its prediction events (``source = 'batch'``) get an ``event_id`` derived from the same
key, so a re-run inserts none twice (``ON CONFLICT (event_id) DO NOTHING``). Client ids are
the pseudonyms of the client feature store, never raw ids.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from credit_scoring.storage.database import insert_rows, make_engine, placeholder
from credit_scoring.storage.schema import create_schema, events_table, row_columns

if TYPE_CHECKING:
    import pandas as pd

BATCH_SCORES_TABLE = "batch_scores"
BATCH_SOURCE = "batch"
BATCH_ENDPOINT = "batch_scoring"
SCORE_COLUMNS = [
    "run_id",
    "model_name",
    "model_version",
    "client_id",
    "probability",
    "decision",
    "threshold",
    "mlflow_run_id",
    "scored_at",
]

metadata = sa.MetaData()
batch_scores_table = sa.Table(
    BATCH_SCORES_TABLE,
    metadata,
    sa.Column("run_id", sa.String(64), nullable=False, comment="the batch run"),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("client_id", sa.String(128), nullable=False, comment="pseudonym, never a raw id"),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("mlflow_run_id", sa.String(64), nullable=True, comment="the model's training run"),
    sa.Column("scored_at", sa.DateTime(), nullable=False, comment="UTC"),
    sa.PrimaryKeyConstraint("run_id", "model_name", "model_version", "client_id"),
    sa.Index(f"ix_{BATCH_SCORES_TABLE}_client_id", "client_id"),
)


def batch_event_id(run_id: str, model_name: str, model_version: str, client_id: str) -> str:
    """The idempotency key of a batch prediction event (32 hex characters, like the API's)."""
    key = "\x1f".join((BATCH_SOURCE, run_id, model_name, model_version, client_id))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def replace_batch_scores(url: str, scores: pd.DataFrame) -> int:
    """Store a run's scores in one transaction, replacing that run's rows for its version."""
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"batch scores lack column(s) {missing}")
    engine = make_engine(url)
    try:
        metadata.create_all(engine, tables=[batch_scores_table], checkfirst=True)
        t = batch_scores_table.c
        runs = scores[["run_id", "model_name", "model_version"]].drop_duplicates()
        marker = placeholder(engine)
        sql = (
            f"INSERT INTO {BATCH_SCORES_TABLE} ({', '.join(SCORE_COLUMNS)}) "
            f"VALUES ({', '.join([marker] * len(SCORE_COLUMNS))})"
        )
        rows = _tuples(scores, SCORE_COLUMNS)
        with engine.begin() as conn:
            for run_id, name, version in runs.itertuples(index=False):
                conn.execute(
                    batch_scores_table.delete().where(
                        t.run_id == run_id, t.model_name == name, t.model_version == version
                    )
                )
            if rows:
                conn.exec_driver_sql(sql, rows)
        return len(rows)
    finally:
        engine.dispose()


def read_batch_scores(url: str, run_id: str | None = None) -> pd.DataFrame:
    import pandas as pd

    engine = make_engine(url)
    try:
        query = sa.select(batch_scores_table)
        if run_id is not None:
            query = query.where(batch_scores_table.c.run_id == run_id)
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).mappings().all(), columns=SCORE_COLUMNS)
    finally:
        engine.dispose()


def record_batch_events(url: str, events: pd.DataFrame) -> int:
    """Insert a run's prediction events in one transaction; returns how many were new.

    ``events`` has the events table's columns (``event_time`` as a datetime, ``features`` as
    JSON text); an ``event_id`` already stored (a re-run) is skipped.
    """
    columns = row_columns(events_table)
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(f"batch prediction events lack column(s) {missing}")
    engine = make_engine(url)
    try:
        create_schema(engine, events_table)
        frame = events[columns].copy()
        frame["event_time"] = [_iso(t) for t in frame["event_time"]]
        rows = _tuples(frame, columns)
        before = _count(engine)
        if rows:
            insert_rows(engine, events_table)(rows)
        return _count(engine) - before
    finally:
        engine.dispose()


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(events_table)).scalar_one())


def _iso(moment: Any) -> str:
    value: datetime = moment.to_pydatetime() if hasattr(moment, "to_pydatetime") else moment
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _tuples(frame: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows as plain Python values (the drivers take no NumPy scalars); NaN/NaT as NULL."""
    subset = frame[columns].astype(object)
    subset = subset.where(subset.notna(), None)
    out = []
    for row in subset.itertuples(index=False, name=None):
        out.append(tuple(v.item() if hasattr(v, "item") else _plain(v) for v in row))
    return out


def _plain(value: Any) -> Any:
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime().replace(tzinfo=None)
    return value
