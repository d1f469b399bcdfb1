"""Load delayed labels (loan outcomes) into the serving database.

    credit-scoring load-outcomes outcomes.csv

The CSV has a header and one row per outcome:

- ``request_id``: the ``request_id`` the API returned with the decision, and/or
- ``client_id``: the client's pseudonym (64 hex characters; never a raw client id),
- ``observed_at``: when the outcome became known (ISO date or date-time, UTC),
- ``defaulted``: 1 (or true / yes) if the loan defaulted, 0 (or false / no) if it was repaid.

The whole file is checked first: one bad row and nothing is loaded; the message names the
line, the field and the fix. An outcome already stored is kept (loading a file twice adds
nothing). The database is ``CREDIT_SCORING_DATABASE_URL``, else the project's SQLite file.
"""

from __future__ import annotations

import csv
import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from credit_scoring.monitoring.store import insert_outcomes, parse_time
from credit_scoring.storage.database import database_url, utc_now

PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
TRUE, FALSE = {"1", "true", "yes"}, {"0", "false", "no"}
MAX_ERRORS_SHOWN = 10


class OutcomesError(ValueError):
    """The file cannot be loaded; the message lists what to fix."""


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str | None = None
    client_id: str | None = None
    observed_at: datetime
    defaulted: int

    @field_validator("request_id", "client_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value is None or str(value).strip() == "" else str(value).strip()

    @field_validator("client_id")
    @classmethod
    def _pseudonym(cls, value: str | None) -> str | None:
        if value is not None and not PSEUDONYM.match(value):
            raise ValueError(
                "must be the client's pseudonym (64 lowercase hex characters, as in the "
                "prediction events), never a raw client id"
            )
        return value

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-zA-Z-]{8,36}", value):
            raise ValueError("must be a request_id returned by the API (8-36 letters, digits, -)")
        return value

    @field_validator("observed_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> datetime:
        try:
            stamp = parse_time(str(value).strip())
        except (ValueError, TypeError) as exc:
            raise ValueError("must be an ISO date or date-time, e.g. 2026-11-22") from exc
        if stamp > utc_now() + timedelta(days=1):
            raise ValueError("is in the future: an outcome is observed, not forecast")
        return stamp

    @field_validator("defaulted", mode="before")
    @classmethod
    def _label(cls, value: Any) -> int:
        text = str(value).strip().lower()
        if text in TRUE:
            return 1
        if text in FALSE:
            return 0
        raise ValueError("must be 1 (defaulted) or 0 (repaid)")

    @model_validator(mode="after")
    def _key(self) -> Outcome:
        if self.request_id is None and self.client_id is None:
            raise ValueError("needs a request_id or a client_id (which decision it labels)")
        return self


def parse(path: Path) -> list[dict[str, Any]]:
    """The validated rows of a CSV file, or OutcomesError naming every problem."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or [])
        missing = {"observed_at", "defaulted"} - header
        if missing or not header & {"request_id", "client_id"}:
            raise OutcomesError(
                f"{path}: the header must name observed_at, defaulted and request_id and/or "
                f"client_id (found: {', '.join(sorted(header)) or 'nothing'}). Nothing was loaded."
            )
        unknown = header - {"request_id", "client_id", "observed_at", "defaulted"}
        if unknown:
            raise OutcomesError(
                f"{path}: unknown column(s) {', '.join(sorted(unknown))}: an outcome file holds "
                "request_id, client_id, observed_at and defaulted only (data minimisation). "
                "Nothing was loaded."
            )
        rows, errors = [], []
        for line, raw in enumerate(reader, start=2):
            try:
                rows.append(Outcome.model_validate(raw).model_dump())
            except ValidationError as exc:
                for error in exc.errors():
                    field = ".".join(str(p) for p in error["loc"]) or "row"
                    message = error["msg"].removeprefix("Value error, ")
                    errors.append(f"line {line}, {field}: {message}")
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        more = len(errors) - len(shown)
        raise OutcomesError(
            f"{path}: {len(errors)} problem(s); fix the file and load it again. Nothing was "
            "loaded.\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        )
    return rows


def load_file(path: Path, url: str) -> tuple[int, int]:
    """Validate then insert; returns (rows in the file, rows new in the database)."""
    rows = parse(path)
    return len(rows), insert_outcomes(url, rows)


def load_and_report(path: Path, url: str | None = None) -> int:
    """Load ``path`` into database ``url`` (default: the project's) and say how many rows
    were new. Returns the exit code (2: the file is missing or wrong, nothing loaded)."""
    url = url or database_url(Path.cwd())
    try:
        total, new = load_file(path, url)
    except (OutcomesError, FileNotFoundError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{total} outcome(s) in {path}: {new} new, {total - new} already loaded.")
    return 0
