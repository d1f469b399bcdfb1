"""The retrain trigger: Alertmanager's webhook receiver that starts retraining, once.

    credit-scoring trigger --host 127.0.0.1 --port 8095

``POST /alerts`` takes Alertmanager's webhook (payload version 4) with a shared bearer
token. A payload that is not Alertmanager's gets a 4xx with the field at fault and starts
nothing. Of all the firing alerts that arrive for a model within the cooldown (default 6 h),
however many and however concurrent, exactly one starts a retraining; every accepted
delivery's decision (started / duplicate / cooldown / ignored / failed) is stored in the
database with the alert fingerprints (``decisions.py``), so a restart forgets nothing.
The token and the body limit are checked by the HTTP guard the API uses (``auth.guard``).
A refused request (no or wrong token, too large, not a webhook) is counted by reason on
``/metrics`` and the last ones are listed on ``/healthz``, but not stored: anyone can send
one, and a row each let a caller grow the database at its own pace (2,000 wrong tokens
wrote 2,000 rows in 2.2 s). ``GET /healthz`` and ``GET /metrics`` (Prometheus) are open.

Settings from the environment (``CREDIT_SCORING_TRIGGER_*``, see ``TriggerSettings``); the
token is ``CREDIT_SCORING_TRIGGER_TOKEN``. Without a token the trigger refuses to start
unless ``CREDIT_SCORING_ENVIRONMENT`` is ``development`` (the default).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from credit_scoring.auth.guard import UNMATCHED, HttpGuard, Refusal, Scope, SharedToken, Wording
from credit_scoring.auth.tokens import Identity
from credit_scoring.monitoring.backends import (
    JOB_TEMPLATE,
    Backend,
    GitHubBackend,
    KubernetesBackend,
    LocalBackend,
)
from credit_scoring.monitoring.backends import Request as RetrainRequest
from credit_scoring.monitoring.decisions import DECISIONS, DecisionStore
from credit_scoring.storage.database import database_url

logger = logging.getLogger("credit_scoring.trigger")

MAX_BODY_BYTES = 1 << 20  # Alertmanager's payloads are small; max_alerts bounds them too
ROUTES = ("/alerts", "/healthz", "/metrics")
DELIVERY = ("POST", "/alerts")
REFUSALS_KEPT = 100  # the last refusals listed on /healthz
WEBHOOK = Identity(subject="alertmanager", roles=frozenset({"webhook"}))
WORDING = Wording(
    unauthenticated="missing or wrong bearer token", too_large="body larger than {limit} bytes"
)


class TriggerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDIT_SCORING_TRIGGER_", extra="ignore")

    token: SecretStr | None = Field(None, description="shared bearer token (Alertmanager's)")
    environment: Literal["development", "staging", "production"] = Field(
        "development",
        validation_alias="CREDIT_SCORING_ENVIRONMENT",
        description="outside development, a trigger without a token refuses to start",
    )
    database_url: str | None = Field(
        None,
        description="where decisions are kept (default: CREDIT_SCORING_DATABASE_URL, "
        "else the project's data/09_serving/serving.db)",
    )
    project_dir: Path = Field(Path.cwd(), description="the Kedro project (local backend)")
    backend: Literal["local", "kubernetes", "github"] = "local"
    cooldown_seconds: float = Field(
        6 * 3600, ge=0, description="one retraining per model per window"
    )
    default_model_name: str = Field("credit_scoring", description="when an alert names no model")
    kubernetes_namespace: str = "credit-scoring"
    kubernetes_job_template: Path = JOB_TEMPLATE
    kubernetes_image: str | None = None
    github_repository: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$")
    github_token: SecretStr | None = None

    def check(self) -> None:
        if self.token is None and self.environment != "development":
            raise SystemExit(
                f"CREDIT_SCORING_TRIGGER_TOKEN is not set and CREDIT_SCORING_ENVIRONMENT is "
                f"{self.environment}: anyone who can reach the trigger could start retraining. "
                "Set the token (the same as in Alertmanager's webhook authorization)."
            )
        if self.backend == "github" and not (self.github_repository and self.github_token):
            raise SystemExit(
                "The github backend needs CREDIT_SCORING_TRIGGER_GITHUB_REPOSITORY (owner/name) "
                "and CREDIT_SCORING_TRIGGER_GITHUB_TOKEN."
            )


# --- Alertmanager's webhook payload (version 4) ------------------------------------------
# https://prometheus.io/docs/alerting/latest/configuration/#webhook_config


class Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime
    endsAt: datetime
    generatorURL: str
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,64}$")


class Webhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    groupKey: str = Field(max_length=4096)
    truncatedAlerts: int = Field(0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str]
    commonLabels: dict[str, str]
    commonAnnotations: dict[str, str]
    externalURL: str
    alerts: list[Alert] = Field(min_length=1, max_length=1000)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.decisions = Counter(
            "credit_scoring_retrain_decisions",
            "Webhook deliveries by decision",
            ["decision"],
            registry=registry,
        )
        for decision in (*DECISIONS, "refused"):
            self.decisions.labels(decision=decision)  # every series exists from the start
        self.rejected = Counter(
            "credit_scoring_retrain_rejected_requests",
            "Requests refused, by reason (no_token, token_wrong, too_large, invalid, "
            "not_found, ...)",
            ["reason"],
            registry=registry,
        )
        self.last_started = Gauge(
            "credit_scoring_retrain_last_started_timestamp_seconds",
            "When the last retraining was started by this trigger (Unix time)",
            registry=registry,
        )


class Refusals:
    """The guard's ``on_reject``: each refused request counted by reason, a refused delivery
    also as the ``refused`` decision, and the last ``kept`` held in memory (not stored)."""

    def __init__(self, metrics: Metrics, kept: int = REFUSALS_KEPT) -> None:
        self.metrics = metrics
        self.recent: deque[dict[str, Any]] = deque(maxlen=kept)

    def __call__(self, refusal: Refusal) -> None:
        self.metrics.rejected.labels(reason=refusal.reason).inc()
        if (refusal.method, refusal.endpoint) == DELIVERY:
            self.metrics.decisions.labels(decision="refused").inc()
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self.recent.append({"at": at, **asdict(refusal)})


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _endpoint(scope: Scope) -> str:
    return str(scope["path"]) if scope["path"] in ROUTES else UNMATCHED


def _required_roles(path: str) -> frozenset[str] | None:
    return WEBHOOK.roles if path == "/alerts" else None


def create_app(settings: TriggerSettings, backend: Backend, store: DecisionStore) -> Starlette:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    refusals = Refusals(metrics)
    cooldown = timedelta(seconds=settings.cooldown_seconds)

    async def record(decision: str, reason: str, **fields: Any) -> None:
        # the database is blocking I/O: off the event loop, like the claim
        await asyncio.to_thread(store.record, decision, reason, **fields)
        metrics.decisions.labels(decision=decision).inc()

    async def alerts(request: Request) -> JSONResponse:
        # the guard has checked the token and the body's size (and counts this 422 too)
        try:
            payload = Webhook.model_validate_json(await request.body())
        except ValidationError as exc:
            errors = [
                {
                    "field": ".".join(str(p) for p in e["loc"]) or "body",
                    "rule": e["type"],
                    "message": e["msg"],
                }
                for e in exc.errors()[:20]
            ]
            first = errors[0]
            return _error(
                422,
                f"not an Alertmanager webhook (version 4): {first['field']}: {first['message']}",
                errors=errors,
            )
        firing = [a for a in payload.alerts if a.status == "firing"]
        fingerprints = sorted({a.fingerprint for a in payload.alerts})
        names = sorted({a.labels.get("alertname", "?") for a in payload.alerts})
        fields = {
            "fingerprints": ",".join(fingerprints)[:2000],
            "alertnames": ",".join(names)[:1000],
            "group_key": payload.groupKey[:1000],
        }
        if not firing:
            await record("ignored", "no firing alert (resolved only)", **fields)
            return JSONResponse({"decision": "ignored"})
        by_model: dict[str, set[str]] = {}  # model -> fingerprints of its firing alerts
        for alert in firing:
            model = alert.labels.get("model_name") or settings.default_model_name
            by_model.setdefault(model, set()).add(alert.fingerprint)
        results = []
        for model_name, fingerprints_of_model in sorted(by_model.items()):
            ids = sorted(fingerprints_of_model)
            claim = await asyncio.to_thread(store.claim, model_name, ids, cooldown)
            reason = claim.reason
            decision = claim.decision
            if decision == "started":
                assert claim.retrain_id is not None
                try:
                    started = await asyncio.to_thread(
                        backend.start, RetrainRequest(claim.retrain_id, model_name, names, ids)
                    )
                    reason = f"{reason}; {started}"
                    metrics.last_started.set_to_current_time()
                except Exception as exc:  # the backend failed: give the window back
                    await asyncio.to_thread(store.release, model_name, claim.retrain_id)
                    decision, reason = "failed", f"{backend.name} backend failed: {exc}"[:1000]
                    logger.error("Retraining of %s could not start: %s", model_name, exc)
            await record(
                decision,
                reason,
                model_name=model_name,
                retrain_id=claim.retrain_id,
                backend=backend.name,
                **{**fields, "fingerprints": ",".join(ids)[:2000]},
            )
            logger.info("Alerts %s for %s: %s (%s)", ",".join(names), model_name, decision, reason)
            results.append(
                {
                    "model_name": model_name,
                    "decision": decision,
                    "retrain_id": claim.retrain_id,
                    "reason": reason,
                }
            )
        status = 502 if all(r["decision"] == "failed" for r in results) else 200
        return JSONResponse({"decisions": results}, status_code=status)

    async def healthz(request: Request) -> JSONResponse:
        recent = list(refusals.recent)
        return JSONResponse({"status": "ok", "backend": backend.name, "recent_refusals": recent})

    async def metrics_route(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(
            404, "no such route: the trigger serves POST /alerts, GET /healthz, GET /metrics"
        )

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return _error(405, "method not allowed on this route")

    guard = Middleware(
        HttpGuard,
        max_body_bytes=MAX_BODY_BYTES,
        authenticator=SharedToken(settings.token.get_secret_value(), WEBHOOK)
        if settings.token
        else None,
        required_roles=_required_roles,
        on_reject=refusals,
        endpoint=_endpoint,
        wording=WORDING,
        logger=logger,
    )
    return Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_allowed},
        middleware=[guard],
    )


def make_backend(settings: TriggerSettings, url: str) -> Backend:
    if settings.backend == "kubernetes":
        return KubernetesBackend(
            namespace=settings.kubernetes_namespace,
            template_path=settings.kubernetes_job_template,
            image=settings.kubernetes_image,
        )
    if settings.backend == "github":
        assert settings.github_repository and settings.github_token
        return GitHubBackend(settings.github_repository, settings.github_token.get_secret_value())
    return LocalBackend(project=settings.project_dir.resolve(), database_url=url)


def serve(host: str = "127.0.0.1", port: int = 8095) -> None:
    """Serve the trigger on ``host:port`` until stopped, with the environment's settings."""
    import uvicorn

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(levelname)s] %(name)s: %(message)s"
    )
    settings = TriggerSettings()
    settings.check()
    if settings.token is None:
        logger.warning(
            "No CREDIT_SCORING_TRIGGER_TOKEN: any local process can start retraining "
            "(development only; refused outside it)"
        )
    url = settings.database_url or database_url(settings.project_dir)
    store = DecisionStore(url)
    app = create_app(settings, make_backend(settings, url), store)
    logger.info(
        "Retrain trigger on http://%s:%d (backend %s, cooldown %.0f s)",
        host,
        port,
        settings.backend,
        settings.cooldown_seconds,
    )
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")
    store.close()
