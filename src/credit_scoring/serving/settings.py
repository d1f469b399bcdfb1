"""Settings of one service process, from the environment (``CREDIT_SCORING_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from credit_scoring.core.spec import PACKAGED_MODEL_FILE
from credit_scoring.storage.database import DATABASE_URL_ENV, sqlite_path

DEFAULT_MODEL_NAME = "credit_scoring"


def packaged_model_tag() -> str:
    """The tag `make build` wrote next to this module; the store's latest model otherwise."""
    packaged = Path(__file__).with_name(Path(PACKAGED_MODEL_FILE).name)
    if packaged.exists():
        return packaged.read_text().strip()
    return f"{DEFAULT_MODEL_NAME}:latest"


class ServingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_SCORING_", extra="ignore")

    model_tag: str = Field(
        default_factory=packaged_model_tag,
        description="BentoML model holding the champion (default: the one the bento was built "
        "with, written by `make build`)",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the prediction events and client features; `make serve` "
        "sets it to the project's database (data/09_serving/serving.db)",
    )
    image: str | None = Field(
        None,
        max_length=255,
        description="the image serving this process (set by the image's build: "
        "deploy/docker/service.Dockerfile); stored in every event and on /metrics",
    )
    log_events: bool = Field(True, description="store every scored request as an event")
    event_batch_size: int = Field(500, ge=1, description="events written per transaction")
    event_flush_seconds: float = Field(
        0.2, gt=0, le=10, description="longest wait before a group of events is written"
    )
    event_journal_dir: str | None = Field(
        None,
        description="folder of the event journals (each answered decision is written there "
        "before the response, then shipped to the database); default: `journal/` beside a "
        "SQLite file, else a folder in the temp directory. In a container, a volume that "
        "outlives the process (an emptyDir survives a container restart)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="level of the service's own log (INFO: one line per refused request)",
    )
    freeze_gc: bool = Field(True, description="gc.freeze() after start-up (tail latency)")
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="a request still running after this gets HTTP 504",
    )
    workers: int = Field(2, ge=1, le=64, description="API worker processes")

    def require_database_url(self) -> str:
        """The database URL; a service without one refuses to start (and says how to fix it)."""
        url = self.database_url
        if not url:
            raise RuntimeError(
                f"{DATABASE_URL_ENV} is not set: the service would not know where the client "
                "features are and where to store its decisions. Start it with `make serve` (the "
                "project's data/09_serving/serving.db) or set the variable, e.g. "
                "postgresql+psycopg://user@host:5432/credit."
            )
        path = sqlite_path(url)
        if path is not None and not path.is_absolute():
            # checked here, in the worker, not at import: `bentoml build` imports the module
            raise RuntimeError(
                f"{DATABASE_URL_ENV}={url} is a relative SQLite path: it would be resolved in the "
                "bento's own folder, where nothing reads it. Give an absolute path "
                "(sqlite:////abs/path/serving.db) or start the service with `make serve`."
            )
        return url
