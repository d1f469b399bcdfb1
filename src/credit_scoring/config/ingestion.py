"""``data_ingestion`` in ``conf/base/parameters_data_ingestion.yml``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from credit_scoring.core.errors import typed_section
from credit_scoring.core.schema import Strict

PARAMS_FILE = "conf/base/parameters_data_ingestion.yml"


class IngestionParams(Strict):
    """``data_ingestion`` in ``parameters_data_ingestion.yml``."""

    on_invalid: Literal["fail", "quarantine"] = "quarantine"
    max_invalid_fraction: float = Field(0.05, ge=0.0, le=1.0)
    allow_development_key: bool = True


def load_ingestion(raw: IngestionParams | dict[str, Any]) -> IngestionParams:
    """The typed section (Kedro passes it typed; tests may pass the mapping)."""
    return typed_section(IngestionParams, raw, "data_ingestion", PARAMS_FILE)
