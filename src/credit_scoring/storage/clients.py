"""The client feature store: known clients' features, replaced in one transaction by the
data_processing pipeline, read by id or as a filtered page or sample by the API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd


from credit_scoring.storage.database import as_datetime, jsonable, make_engine, utc_now

logger = logging.getLogger(__name__)
CLIENT_FEATURES_TABLE = "client_features"


# --- client feature store ---------------------------------------------------------------


OBSERVED_AT = "observed_at"


CHUNK_ROWS = 50_000


def _chunks(frame: Any) -> Iterator[pd.DataFrame]:
    if hasattr(frame, "iloc"):  # one table (pandas is imported only where tables exist)
        for start in range(0, max(len(frame), 1), CHUNK_ROWS):
            yield frame.iloc[start : start + CHUNK_ROWS]
    else:
        yield from frame


def replace_client_features(
    url: str,
    frame: Any,  # a pandas DataFrame, or an Iterable of them
    id_column: str,
    observed_at: datetime | None = None,
) -> int:
    """Replace the client feature table in one transaction (readers never see it half-done).

    ``frame`` is a table or an iterable of chunks (a table too large for memory, or a Spark
    table streamed to the driver): written chunk by chunk, inside the one transaction.
    Each row records when its data were observed (``observed_at``, UTC): the frame's own
    column when it has one, else ``observed_at`` or now (the extraction being stored), so
    that an advisor is warned about data too old to be accurate (GDPR art. 5.1.d).
    """
    if hasattr(frame, "iloc") and (
        frame[id_column].isna().any() or frame[id_column].duplicated().any()
    ):
        # checked before anything is written: SQLite runs DDL outside the transaction
        raise ValueError(f"client features need one row per non-empty '{id_column}'")
    observed = observed_at or utc_now()
    engine = make_engine(url)
    rows = 0
    try:
        with engine.begin() as conn:
            for chunk in _chunks(frame):
                if chunk[id_column].isna().any():
                    raise ValueError(f"client features need one row per non-empty '{id_column}'")
                if OBSERVED_AT not in chunk.columns:
                    chunk = chunk.assign(**{OBSERVED_AT: observed})
                chunk.to_sql(
                    CLIENT_FEATURES_TABLE,
                    conn,
                    if_exists="replace" if rows == 0 else "append",
                    index=False,
                )
                rows += len(chunk)
            try:  # the unique index also proves one row per client, over all the chunks
                conn.execute(
                    sa.text(
                        f'CREATE UNIQUE INDEX "ix_{CLIENT_FEATURES_TABLE}_{id_column}" '
                        f'ON "{CLIENT_FEATURES_TABLE}" ("{id_column}")'
                    )
                )
            except sa.exc.IntegrityError as exc:
                raise ValueError(
                    f"client features need one row per non-empty '{id_column}'"
                ) from exc
        return rows
    finally:
        engine.dispose()


# A filter on the client feature store: (column, operator, value); operators: eq (one of the
# values, a list), ge, le, prefix (of the id). Columns are checked by the caller (the API).
Filter = tuple[str, str, Any]


class ClientFeatureStore:
    """Read known clients' features: one by pseudonymised id, or a filtered page or sample."""

    def __init__(self, url: str, id_column: str) -> None:
        self.engine = make_engine(url)
        self.id_column = id_column
        self._query = sa.text(
            f'SELECT * FROM "{CLIENT_FEATURES_TABLE}" WHERE "{id_column}" = :client_id'
        )

    def available(self) -> bool:
        return sa.inspect(self.engine).has_table(CLIENT_FEATURES_TABLE)

    def lookup(self, client_id: str) -> tuple[dict[str, Any], datetime | None] | None:
        """The client's stored features and when they were observed; None if unknown."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(self._query, {"client_id": client_id}).mappings().first()
        except sa.exc.DBAPIError:
            if self.available():
                raise
            logger.warning("The client feature store is empty: run the data_processing pipeline")
            return None
        if row is None:
            return None
        features = {k: v for k, v in row.items() if k not in (self.id_column, OBSERVED_AT)}
        return features, as_datetime(row.get(OBSERVED_AT))

    def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's stored features, or None for an unknown id (or an empty store)."""
        found = self.lookup(client_id)
        return None if found is None else found[0]

    def _where(self, filters: list[Filter]) -> list[Any]:
        clauses: list[Any] = []
        for column, op, value in filters:
            col: Any = sa.column(column)
            if op == "eq":
                clauses.append(col.in_(list(value)))
            elif op == "ge":
                clauses.append(col >= value)
            elif op == "le":
                clauses.append(col <= value)
            elif op == "prefix":  # ids are hex: no LIKE wildcard can be in them
                clauses.append(col.startswith(str(value), autoescape=True))
            else:
                raise ValueError(f"unknown filter operator {op!r}")
        return clauses

    def _rows(
        self, filters: list[Filter], columns: list[str] | None, limit: int, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and ``limit`` of them from ``offset`` (``columns``, or all),
        in id order (pseudonyms are uniformly spread: a stable, unbiased order). The table is
        named, not reflected: no schema query on the request path."""
        table = sa.table(CLIENT_FEATURES_TABLE)
        where = self._where(filters)
        selected: list[Any] = (
            [sa.column(c) for c in columns] if columns else [sa.literal_column("*")]
        )
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
            count = int(total.scalar_one())
            rows = conn.execute(
                sa.select(*selected)
                .select_from(table)
                .where(*where)
                .order_by(sa.column(self.id_column))
                .limit(limit)
                .offset(offset)
            )
            return count, [dict(r) for r in rows.mappings()]

    def search(
        self, filters: list[Filter], columns: list[str], limit: int, offset: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and one page of them (id, observed_at, ``columns``)."""
        count, rows = self._rows(filters, [self.id_column, OBSERVED_AT, *columns], limit, offset)
        for row in rows:  # SQLite gives the text it stored, PostgreSQL a datetime: one format
            row[OBSERVED_AT] = as_datetime(row[OBSERVED_AT])
        return count, [jsonable(row) for row in rows]

    def sample(self, filters: list[Filter], size: int) -> tuple[int, list[dict[str, Any]]]:
        """How many clients match, and up to ``size`` of them (all their features)."""
        count, rows = self._rows(filters, None, size)
        meta = (self.id_column, OBSERVED_AT)
        return count, [{k: v for k, v in row.items() if k not in meta} for row in rows]

    def close(self) -> None:
        self.engine.dispose()
