"""Settings of the dashboard, from the environment (``CREDIT_SCORING_DASHBOARD_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_SCORING_DASHBOARD_", extra="ignore")

    api_url: str = Field(
        "http://127.0.0.1:3000",
        pattern=r"^https?://",
        description="the scoring API (the dashboard reads nothing else)",
    )
    environment: Literal["development", "staging", "production"] = Field(
        "development",
        validation_alias="CREDIT_SCORING_ENVIRONMENT",
        description="outside development, only the OIDC sign-in is offered",
    )
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    max_data_age_days: int = Field(
        183,
        ge=1,
        description="older client data get a warning (GDPR art. 5.1.d: accuracy)",
    )
    page_size: int = Field(20, ge=1, le=50, description="clients per page of search results")
    comparison_sample: int = Field(500, ge=50, le=2000, description="clients drawn per group")
    # The transparency page (GDPR art. 13/14): who is responsible, whom to contact.
    controller: str = Field("Example Consumer Credit Ltd", description="the data controller")
    dpo_contact: str = Field("dpo@example.com", description="the data protection officer")
    contest_contact: str = Field(
        "credit-review@example.com",
        description="where a client asks for a human review of a decision",
    )
    events_retention_days: int = Field(365, ge=1, description="as serving.events.retention_days")
    audit_retention_days: int = Field(365, ge=1, description="as serving.audit.retention_days")
