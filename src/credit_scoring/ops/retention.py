"""Delete prediction events, loan outcomes and access audit records older than their
retention periods (GDPR storage limitation).

``credit-scoring purge-events`` (``make purge-events``) reads
``serving.events.retention_days`` and ``serving.audit.retention_days`` from the project's
parameters, or ``--days`` (both), and the
database from ``CREDIT_SCORING_DATABASE_URL``. Run it daily (a cron job or a Kubernetes
CronJob); it prints how many events and outcomes it deleted.
"""

from __future__ import annotations

import logging

from credit_scoring.config.loader import PROJECT_ROOT, project_parameters
from credit_scoring.core.spec import ServingConfig
from credit_scoring.monitoring.store import purge_outcomes
from credit_scoring.storage.database import database_url
from credit_scoring.storage.events import purge_events
from credit_scoring.storage.schema import AUDIT_TABLE

logger = logging.getLogger(__name__)


def purge(days: int | None = None, env: str | None = None) -> int:
    """Delete what is past its retention period: ``days`` for all three tables, else the
    configured periods (Kedro environment ``env``). Returns how many rows were deleted."""
    audit_days = days
    if days is None:
        serving = ServingConfig.model_validate(project_parameters(env).get("serving", {}))
        days, audit_days = serving.events.retention_days, serving.audit.retention_days
    assert audit_days is not None
    url = database_url(PROJECT_ROOT)
    deleted = purge_events(url, days)
    outcomes = purge_outcomes(url, days)
    audited = purge_events(url, audit_days, table=AUDIT_TABLE)
    print(
        f"Deleted {deleted} prediction event(s) and {outcomes} loan outcome(s) older than "
        f"{days} day(s), and {audited} access audit record(s) older than {audit_days} day(s)."
    )
    return deleted + outcomes + audited
