"""The tables the service writes (prediction events, the access audit trail) and their
migration: columns added after a table's first release are added at start-up."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    pass


logger = logging.getLogger(__name__)
EVENTS_TABLE = "prediction_events"

metadata = sa.MetaData()
events_table = sa.Table(
    EVENTS_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(32), nullable=True, comment="idempotency key"),
    sa.Column("event_time", sa.DateTime(), nullable=False, index=True, comment="UTC"),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("client_id", sa.String(128), nullable=True, index=True, comment="pseudonym"),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("features", sa.JSON(), nullable=False),
    sa.Column("probability", sa.Float(), nullable=False),
    sa.Column("decision", sa.String(8), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=False),
    # lineage: the training run of the model (-> its commit and data hash) and the image
    sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    sa.Column("image", sa.String(255), nullable=True, comment="image that served it"),
    # who decided: the API ("api"; null in rows written before the column) or a batch
    # scoring run ("batch"); a bounded set, safe as a metric label
    sa.Column("source", sa.String(8), nullable=True, comment="api | batch"),
    sa.Index(f"uq_{EVENTS_TABLE}_event_id", "event_id", unique=True),
)
AUDIT_TABLE = "access_audit"
# Who read which client's data, when, through which route, with what outcome: written like
# the prediction events (journal, then shipper), purged by the retention command.
audit_table = sa.Table(
    AUDIT_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(32), nullable=False, comment="idempotency key"),
    sa.Column("event_time", sa.DateTime(), nullable=False, index=True, comment="UTC"),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("subject", sa.String(255), nullable=False, index=True, comment="token `sub`"),
    sa.Column("roles", sa.String(64), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("route", sa.String(64), nullable=False, comment="route template, never the path"),
    sa.Column("client_id", sa.String(128), nullable=True, index=True, comment="pseudonym"),
    sa.Column("status", sa.SmallInteger(), nullable=False, comment="HTTP status answered"),
    sa.Index(f"uq_{AUDIT_TABLE}_event_id", "event_id", unique=True),
)
TABLES = {EVENTS_TABLE: events_table, AUDIT_TABLE: audit_table}


def row_columns(table: sa.Table) -> list[str]:
    """The order of a journal line (a JSON array) and of the INSERT's parameters."""
    return [c.name for c in table.columns if c.name != "id"]


ROW_COLUMNS = row_columns(events_table)
# columns added after the table's first release: a database made before gets them at start-up
_ADDED_COLUMNS = {
    "event_id": "VARCHAR(32)",
    "mlflow_run_id": "VARCHAR(64)",
    "image": "VARCHAR(255)",
    "source": "VARCHAR(8)",
}
SOURCES = ("api", "batch")  # the values of prediction_events.source


def create_schema(engine: Engine, table: sa.Table = events_table) -> None:
    """Create the table, or add the columns an events table made before them lacks.

    Every process runs this before its first insert (several workers may race here): the
    unique index that ``ON CONFLICT`` needs exists before anything is written.
    """
    try:
        metadata.create_all(engine, tables=[table], checkfirst=True)
    except sa.exc.DBAPIError:  # another worker created it between the check and the CREATE
        if not sa.inspect(engine).has_table(table.name):
            raise
    if table is not events_table:
        return
    for name, sql_type in _ADDED_COLUMNS.items():
        if name in {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}:
            continue
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN {name} {sql_type}"))
        except sa.exc.DBAPIError:  # another worker added it first
            if name not in {c["name"] for c in sa.inspect(engine).get_columns(EVENTS_TABLE)}:
                raise
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE UNIQUE INDEX IF NOT EXISTS uq_{EVENTS_TABLE}_event_id "
                f"ON {EVENTS_TABLE} (event_id)"
            )
        )
