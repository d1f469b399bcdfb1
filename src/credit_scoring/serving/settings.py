"""Settings of one service process, from the environment (``CREDIT_SCORING_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_scoring.serving.store import DEFAULT_DATABASE_URL


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_SCORING_", extra="ignore")

    model_tag: str = Field(
        "credit_scoring:latest", description="BentoML model holding the champion"
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the prediction events and client features",
    )
    log_events: bool = Field(True, description="store every scored request as an event")
    event_batch_size: int = Field(500, ge=1, description="events written per transaction")
    event_flush_seconds: float = Field(
        0.2, gt=0, le=10, description="longest wait before a group of events is written"
    )
    freeze_gc: bool = Field(True, description="gc.freeze() after start-up (tail latency)")
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request still running after this gets HTTP 504",
    )
    workers: int = Field(2, ge=1, le=64, description="API worker processes")
