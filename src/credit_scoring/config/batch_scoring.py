"""``batch_scoring`` in ``conf/base/parameters_batch_scoring.yml``: every key is checked.

What is scored and where it goes are catalog entries (``batch_scoring_input``,
``batch_scores``, ``batch_scores_table``, ``batch_prediction_events``); these are the run's
own settings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, field_validator

from credit_scoring.core.schema import Strict

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,29}$"


class BatchScoringParams(Strict):
    run_id: str | None = Field(
        None,
        pattern=RUN_ID_PATTERN,
        description="names the run in its outputs and event keys (re-running the same id with "
        "the same model version replaces its scores and adds no event twice); null = the UTC "
        "date of the run, so a nightly job re-run the same day replaces its own output",
    )
    chunk_size: int = Field(
        50_000,
        ge=1,
        le=5_000_000,
        description="rows scored per call of the scorer (pandas: per chunk; Spark: rows per "
        "Arrow batch, spark.sql.execution.arrow.maxRecordsPerBatch)",
    )
    num_threads: int = Field(
        2, ge=1, le=256, description="LightGBM threads per chunk on pandas (Spark: 1 per task)"
    )
    partitions: int | None = Field(
        None, ge=1, description="Spark: the table is split in this many tasks (null = as read)"
    )
    record_events: bool = Field(
        True,
        description="also store one prediction event per client (source 'batch'), which the "
        "monitoring pipeline reads like the API's",
    )

    @field_validator("run_id", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        # `--params batch_scoring.run_id=2026-12-01` reaches us as a date (YAML)
        return value.isoformat() if isinstance(value, dt.date) else value

    def resolved_run_id(self, now: dt.datetime) -> str:
        return self.run_id or now.date().isoformat()
