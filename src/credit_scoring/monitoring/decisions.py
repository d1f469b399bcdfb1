"""The retrain trigger's memory, in the serving database: every decision, and the cooldown.

``retrain_decisions`` keeps one row per accepted webhook delivery: when, the alert
fingerprints, the decision (started / duplicate / cooldown / ignored / failed) and why. A
refused request is not a row (the trigger counts it and keeps the last ones in memory);
databases written before that may still hold ``refused`` rows.
``retrain_state`` holds one row per model: when its last retraining started. Taking the
cooldown is one conditional UPDATE (``... WHERE last_started_at < cutoff``), atomic in SQLite
and PostgreSQL alike: of any number of concurrent deliveries, from one trigger process or
several, exactly one wins; a restart of the trigger forgets nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from credit_scoring.storage.database import make_engine, placeholder, utc_now
from credit_scoring.storage.journal import time_ordered_id

metadata = sa.MetaData()
decisions_table = sa.Table(
    "retrain_decisions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("received_at", sa.DateTime(), nullable=False, index=True, comment="UTC"),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=True),
    sa.Column("fingerprints", sa.String(2000), nullable=True, comment="sorted, comma-separated"),
    sa.Column("alertnames", sa.String(1000), nullable=True),
    sa.Column("group_key", sa.String(1000), nullable=True),
    sa.Column("retrain_id", sa.String(32), nullable=True, index=True),
    sa.Column("backend", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(1000), nullable=False),
)
state_table = sa.Table(
    "retrain_state",
    metadata,
    sa.Column("model_name", sa.String(128), primary_key=True),
    sa.Column("last_started_at", sa.DateTime(), nullable=True),
    sa.Column("retrain_id", sa.String(32), nullable=True),
    sa.Column("fingerprints", sa.String(2000), nullable=True, comment="of the alerts that won"),
)
runs_table = sa.Table(
    "retrain_runs",
    metadata,
    sa.Column("retrain_id", sa.String(32), primary_key=True),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("backend", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, comment="started, succeeded, failed"),
    sa.Column("model_version", sa.String(32), nullable=True, comment="the challenger"),
    sa.Column("gate_decision", sa.String(16), nullable=True, comment="promoted, rejected"),
    sa.Column("detail", sa.String(4000), nullable=True),
)

DECISIONS = ("started", "duplicate", "cooldown", "ignored", "failed")  # the stored ones


@dataclass(frozen=True)
class Claim:
    decision: str  # started / duplicate / cooldown
    retrain_id: str | None
    reason: str


class DecisionStore:
    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        self._marker = placeholder(self.engine)
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def claim(
        self,
        model_name: str,
        fingerprints: list[str],
        cooldown: timedelta,
        now: datetime | None = None,
    ) -> Claim:
        """Start a retraining of ``model_name`` unless one started within ``cooldown``."""
        now = now or utc_now()
        retrain_id = time_ordered_id()
        s = state_table.c
        with self.engine.begin() as conn:  # the model's row, once (concurrent deliveries too)
            conn.exec_driver_sql(
                f"INSERT INTO {state_table.name} (model_name) VALUES ({self._marker}) "
                "ON CONFLICT (model_name) DO NOTHING",
                (model_name,),
            )
        with self.engine.begin() as conn:
            won = conn.execute(
                state_table.update()
                .where(
                    s.model_name == model_name,
                    sa.or_(s.last_started_at.is_(None), s.last_started_at < now - cooldown),
                )
                .values(
                    last_started_at=now, retrain_id=retrain_id, fingerprints=",".join(fingerprints)
                )
            ).rowcount
            if won == 1:
                return Claim(
                    "started", retrain_id, f"no retraining of {model_name} since {cooldown}"
                )
            row = conn.execute(
                sa.select(s.last_started_at, s.retrain_id, s.fingerprints).where(
                    s.model_name == model_name
                )
            ).one()
        started_at, current, winners = row
        until = (started_at + cooldown).isoformat(timespec="seconds")
        # the same alerts as the ones that started it (written with the claim, atomically),
        # or as any delivery that was already called a duplicate of it
        same = bool(set((winners or "").split(",")) & set(fingerprints))
        if same or self._started_by(current, fingerprints):
            return Claim(
                "duplicate",
                current,
                f"these alerts already started retraining {current}; cooldown until {until}",
            )
        return Claim(
            "cooldown",
            current,
            f"retraining {current} started at {started_at.isoformat(timespec='seconds')}; "
            f"the next one may start after {until}",
        )

    def _started_by(self, retrain_id: str | None, fingerprints: list[str]) -> bool:
        if retrain_id is None or not fingerprints:
            return False
        d = decisions_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.fingerprints).where(
                    d.retrain_id == retrain_id, d.decision.in_(["started", "duplicate"])
                )
            ).all()
        seen = {f for (text,) in rows for f in (text or "").split(",") if f}
        return bool(seen & set(fingerprints))

    def record(self, decision: str, reason: str, **fields: Any) -> None:
        if decision not in DECISIONS:
            raise ValueError(f"unknown decision {decision!r}")
        with self.engine.begin() as conn:
            conn.execute(
                decisions_table.insert().values(
                    received_at=utc_now(), decision=decision, reason=reason[:1000], **fields
                )
            )

    def release(self, model_name: str, retrain_id: str) -> None:
        """The retraining could not even start: give the cooldown back."""
        s = state_table.c
        with self.engine.begin() as conn:
            conn.execute(
                state_table.update()
                .where(s.model_name == model_name, s.retrain_id == retrain_id)
                .values(last_started_at=None)
            )

    def decisions(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(decisions_table).order_by(decisions_table.c.id))
            return [dict(r) for r in rows.mappings()]

    # --- retraining runs (written by the local backend's runner) ------------------------

    def run_started(self, retrain_id: str, model_name: str, backend: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs_table.insert().values(
                    retrain_id=retrain_id,
                    model_name=model_name,
                    backend=backend,
                    started_at=utc_now(),
                    status="started",
                )
            )

    def run_finished(self, retrain_id: str, status: str, **fields: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs_table.update()
                .where(runs_table.c.retrain_id == retrain_id)
                .values(status=status, finished_at=utc_now(), **fields)
            )

    def runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs_table).order_by(runs_table.c.started_at))
            return [dict(r) for r in rows.mappings()]
