"""What the monitoring loop reads and writes in the serving database (SQLite or PostgreSQL).

- ``loan_outcomes``: the delayed labels. A loan's outcome is known months after its decision;
  a file of outcomes (keyed by the request id the API returned, or by the pseudonymised client
  id, with the date the outcome was observed) is loaded by ``python -m
  credit_scoring.monitoring.outcomes FILE`` and joined with the prediction events here.
- ``read_window``: the prediction events of one model version in a window (the last N events
  and/or the last T hours), with their outcome where it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from credit_scoring.storage.database import make_engine, placeholder, utc_now
from credit_scoring.storage.schema import events_table

OUTCOMES_TABLE = "loan_outcomes"

metadata = sa.MetaData()
outcomes_table = sa.Table(
    OUTCOMES_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("request_id", sa.String(36), nullable=True, comment="the API's request_id"),
    sa.Column("client_id", sa.String(128), nullable=True, comment="pseudonym, never a raw id"),
    sa.Column("observed_at", sa.DateTime(), nullable=False, comment="when the outcome was known"),
    sa.Column("defaulted", sa.SmallInteger(), nullable=False, comment="1 = the loan defaulted"),
    sa.Column("loaded_at", sa.DateTime(), nullable=False),
    sa.CheckConstraint("defaulted IN (0, 1)", name="ck_loan_outcomes_defaulted"),
    sa.CheckConstraint(
        "request_id IS NOT NULL OR client_id IS NOT NULL", name="ck_loan_outcomes_key"
    ),
    # one outcome per request, and per client and date: loading a file twice adds nothing
    sa.Index("uq_loan_outcomes_request_id", "request_id", unique=True),
    sa.Index("uq_loan_outcomes_client_observed", "client_id", "observed_at", unique=True),
)
OUTCOME_COLUMNS = ["request_id", "client_id", "observed_at", "defaulted"]


def create_outcomes_table(engine: Engine) -> None:
    metadata.create_all(engine, tables=[outcomes_table], checkfirst=True)


def insert_outcomes(url: str, rows: list[dict[str, Any]]) -> int:
    """Insert validated outcomes in one transaction; returns how many were new.

    An outcome already stored (same request id, or same client and date) is kept as it is:
    a file loaded twice, or two overlapping files, change nothing.
    """
    engine = make_engine(url)
    try:
        create_outcomes_table(engine)
        loaded_at = utc_now()
        marker = placeholder(engine)
        sql = (
            f"INSERT INTO {OUTCOMES_TABLE} ({', '.join(OUTCOME_COLUMNS)}, loaded_at) "
            f"VALUES ({', '.join([marker] * (len(OUTCOME_COLUMNS) + 1))}) ON CONFLICT DO NOTHING"
        )
        params = [(*(row[c] for c in OUTCOME_COLUMNS), loaded_at) for row in rows]
        with engine.begin() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(outcomes_table)).scalar()
            if params:
                conn.exec_driver_sql(sql, params)
            after = conn.execute(sa.select(sa.func.count()).select_from(outcomes_table)).scalar()
        return int(after or 0) - int(before or 0)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Window:
    """Which events to monitor: the newest ``last_events`` of the model version (None = the
    version of the newest event), no older than ``last_hours`` (None = no age limit)."""

    last_events: int | None = 5000
    last_hours: float | None = None
    model_version: str | None = None
    sources: tuple[str, ...] = ("api",)  # api and/or batch


META_COLUMNS = [
    "event_id",
    "request_id",
    "event_time",
    "client_id",
    "model_version",
    "probability",
    "decision",
    "threshold",
    "source",
]
CHUNK = 10_000


def read_window(url: str, model_name: str, window: Window) -> pd.DataFrame:
    """The events of the window, oldest first: one column per feature the API received, then
    ``probability``, ``decision``, ``threshold``, ``model_version``, ``source`` (``api`` or
    ``batch``: a batch scoring run's events are read like the API's) and ``defaulted`` (the
    outcome, NaN where it is not known yet). Empty if there are no events."""
    engine = make_engine(url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        if events_table.name not in tables:  # nothing served yet (and nothing written here)
            return pd.DataFrame()
        e = events_table.c
        stored = {c["name"] for c in sa.inspect(engine).get_columns(events_table.name)}
        has_source = "source" in stored  # a database no API of this version has written yet
        with engine.connect() as conn:
            version = window.model_version
            source = sa.func.coalesce(e.source, "api") if has_source else sa.literal("api")
            of_sources = source.in_(list(window.sources))
            if version is None:
                version = conn.execute(
                    sa.select(e.model_version)
                    .where(e.model_name == model_name, of_sources)
                    .order_by(e.id.desc())
                    .limit(1)
                ).scalar()
            if version is None:
                return pd.DataFrame()
            query = sa.select(
                e.event_id,
                e.request_id,
                e.event_time,
                e.client_id,
                e.model_version,
                e.probability,
                e.decision,
                e.threshold,
                # api or batch (null: an API event stored before the column existed)
                source.label("source"),
                # as text, parsed by orjson below: several times faster than the driver's json
                sa.cast(e.features, sa.Text).label("features"),
            ).where(e.model_name == model_name, e.model_version == str(version), of_sources)
            if window.last_hours is not None:
                since = utc_now() - timedelta(hours=window.last_hours)
                query = query.where(e.event_time >= since)
            query = query.order_by(e.id.desc())
            if window.last_events is not None:
                query = query.limit(window.last_events)
            # in chunks: 100,000 events as Python dicts at once would cost ~1 GB of memory
            # that the interpreter keeps after they are freed
            parts = []
            result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(query)
            for chunk in result.partitions():
                meta = pd.DataFrame([r[:-1] for r in chunk], columns=META_COLUMNS)
                features = pd.DataFrame.from_records([orjson.loads(r[-1]) for r in chunk])
                overlap = features.columns.intersection(meta.columns)
                parts.append(pd.concat([features, meta.drop(columns=overlap)], axis=1))
            outcomes = _outcomes_of(conn, parts) if OUTCOMES_TABLE in tables else pd.DataFrame()
    finally:
        engine.dispose()
    if not parts:
        return pd.DataFrame()
    frame = pd.concat(parts, ignore_index=True).iloc[::-1].reset_index(drop=True)  # oldest first
    frame["defaulted"] = join_outcomes(frame, outcomes)
    return frame


def _outcomes_of(conn: sa.Connection, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The outcomes of the window's requests and clients only (not the whole table)."""
    o = outcomes_table.c
    columns = ["request_id", "client_id", "observed_at", "defaulted"]
    rows: list[Any] = []
    for part in parts:
        requests = part["request_id"].dropna().unique().tolist()
        clients = part["client_id"].dropna().unique().tolist()
        for start in range(0, max(len(requests), len(clients)), 1000):
            query = sa.select(o.request_id, o.client_id, o.observed_at, o.defaulted).where(
                sa.or_(
                    o.request_id.in_(requests[start : start + 1000]),
                    o.client_id.in_(clients[start : start + 1000]),
                )
            )
            rows += conn.execute(query).all()
    return pd.DataFrame(rows, columns=columns).drop_duplicates()


def join_outcomes(events: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Series:
    """Each event's outcome: by its request id, else by its client's first outcome observed
    after the decision. NaN where none is known."""
    result = pd.Series(float("nan"), index=events.index)
    if outcomes.empty:
        return result
    by_request = outcomes.dropna(subset=["request_id"]).drop_duplicates("request_id")
    mapped = events["request_id"].map(by_request.set_index("request_id")["defaulted"])
    result = mapped.astype(float)
    by_client = outcomes.dropna(subset=["client_id"])
    todo = result.isna() & events["client_id"].notna()
    if todo.any() and not by_client.empty:
        left = events.loc[todo, ["client_id", "event_time"]].reset_index()
        left["event_time"] = pd.to_datetime(left["event_time"])
        right = by_client[["client_id", "observed_at", "defaulted"]].copy()
        right["observed_at"] = pd.to_datetime(right["observed_at"])
        merged = pd.merge_asof(
            left.sort_values("event_time"),
            right.sort_values("observed_at"),
            left_on="event_time",
            right_on="observed_at",
            by="client_id",
            direction="forward",
        )
        result.loc[merged["index"].to_numpy()] = merged["defaulted"].astype(float).to_numpy()
    return result


def purge_outcomes(url: str, older_than_days: int, now: datetime | None = None) -> int:
    """Delete outcomes observed before the retention period; returns how many."""
    if older_than_days < 1:
        raise ValueError(f"retention_days must be at least 1 (got {older_than_days})")
    cutoff = (now or utc_now()).replace(tzinfo=None) - timedelta(days=older_than_days)
    engine = make_engine(url)
    try:
        create_outcomes_table(engine)
        with engine.begin() as conn:
            result = conn.execute(
                outcomes_table.delete().where(outcomes_table.c.observed_at < cutoff)
            )
        return int(result.rowcount or 0)
    finally:
        engine.dispose()


def parse_time(value: str | datetime) -> datetime:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()
