"""The scoring API (BentoML): ``bentoml serve credit_scoring.serving.service:CreditScoring``.

Wiring only. POST /predict, /predict_batch, /explain are the methods below (``scoring.py``
decides); GET /clients/... (``routes/clients.py``, when the data has client ids) and
/model/card (``routes/model.py``) are mounted beside them; GET /healthz, /readyz, /metrics
are BentoML's own. Every request passes the HTTP guard (``http.py``); ``/docs.json`` is
completed by ``openapi.py``. The champion and its ``serving_spec.json`` come from the
BentoML model store (``make build``).
"""

from __future__ import annotations

import gc
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from pydantic import BaseModel, Field

from credit_scoring.auth.tokens import AuthSettings, Verifier
from credit_scoring.core.spec import SPEC_FILE, ServingSpec
from credit_scoring.serving import bentoml_fixes, openapi
from credit_scoring.serving.http import ApiGuard
from credit_scoring.serving.metrics import count_rejected, publish_model
from credit_scoring.serving.queries import Columns
from credit_scoring.serving.routes import clients as client_routes
from credit_scoring.serving.routes import model as model_routes
from credit_scoring.serving.schemas import BatchPrediction, ClientId, Explanation, Prediction
from credit_scoring.serving.scorer import Scorer
from credit_scoring.serving.scoring import Scoring, check_client_id
from credit_scoring.serving.settings import ServingSettings
from credit_scoring.storage.clients import ClientFeatureStore
from credit_scoring.storage.events import EventStore
from credit_scoring.storage.schema import AUDIT_TABLE

logger = logging.getLogger(__name__)
# BentoML looks the patched names up when it builds the app, which may be before any of our
# code runs in the worker: the fixes go in when the service is imported.
bentoml_fixes.apply()

settings = ServingSettings()
champion = bentoml.models.BentoModel(settings.model_tag)
# BentoML reads the request model from the API signatures when the class is defined, and it
# is generated from the champion's data contract: the spec is read at import.
SPEC = ServingSpec.load(champion.stored.path_of(SPEC_FILE))
if TYPE_CHECKING:
    Application = BaseModel
else:
    Application = SPEC.request_model()
# Clients can be looked up by id only when the data has one (data_contract.id_column).
HAS_CLIENTS = SPEC.contract.id_column is not None
OPERATIONS = (
    *(client_routes.operations(Columns.of(SPEC.contract)) if HAS_CLIENTS else ()),
    *model_routes.operations(),
)


def _mount_clients(cls: Any) -> Any:
    return bentoml.asgi_app(client_routes.app(), path="/clients")(cls) if HAS_CLIENTS else cls


@bentoml.asgi_app(model_routes.app(), path="/model")
@_mount_clients
@bentoml.service(
    name="credit_scoring",
    workers=settings.workers,
    traffic={"timeout": settings.request_timeout_seconds},
    # Telemetry records route templates only (see telemetry.py). BentoML's access log and its
    # OpenTelemetry spans carry the raw path (a client's pseudonym): the access log is off,
    # and so is tracing, whose spans nobody exported (no exporter is configured) and which
    # cost ~40% of the throughput of /predict (docs/benchmarks.md). Before turning tracing on,
    # add a span processor that replaces the path (span name, http.target) by the template.
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/"]},
)
class CreditScoring:
    """Scores loan applications with the champion and explains its decisions."""

    model = champion

    def __init__(self) -> None:
        # BentoML's logging config keeps other loggers at WARNING: our INFO lines (start-up,
        # one line per refused request, events taken over from a stopped worker) are wanted
        logging.getLogger("credit_scoring").setLevel(settings.log_level)
        self.spec = SPEC
        self.columns = Columns.of(SPEC.contract)  # what advisors may filter on and see
        self.scorer = Scorer(SPEC, Path(self.model.path))
        database = settings.require_database_url()
        self.clients = (
            ClientFeatureStore(database, SPEC.contract.pseudonymised_id_column)
            if HAS_CLIENTS
            else None
        )
        journal: dict[str, Any] = {
            "batch_size": settings.event_batch_size,
            "flush_seconds": settings.event_flush_seconds,
            "journal": settings.event_journal_dir,
        }
        events = EventStore(database, **journal) if settings.log_events else None
        # who read which client's data: same journal-then-ship design as the events
        self.audit = EventStore(database, table=AUDIT_TABLE, **journal)
        image = settings.image or None  # an image built without a reference sets ""
        self.scoring = Scoring(SPEC, self.scorer, events, image)
        self.scorer.explain(dict.fromkeys(SPEC.contract.columns))  # warm it before /readyz
        if settings.freeze_gc:
            # Everything loaded so far (mlflow, pandas, the model...) lives as long as the
            # process: keep it out of the garbage collector's full passes, which otherwise
            # stop a worker for 100+ ms at random and make the p99 latency.
            gc.collect()
            gc.freeze()
        publish_model(SPEC, image)
        self.ready = True
        logger.info(
            "Serving %s version %s (%s), threshold %.4f",
            SPEC.model_name,
            SPEC.model_version,
            SPEC.candidate,
            SPEC.threshold,
        )

    def __is_ready__(self) -> bool:
        return getattr(self, "ready", False)

    @bentoml.on_shutdown
    def close(self) -> None:
        self.audit.close()
        if self.scoring.events is not None:
            self.scoring.events.close()
        if self.clients is not None:
            self.clients.close()

    def record_access(self, record: dict[str, Any]) -> None:
        """One line of the access audit trail (the guard's ``on_access``)."""
        self.audit.record(record)

    @bentoml.api(route="/predict")
    async def predict(
        self,
        application: Application,
        client_id: ClientId | None = None,
    ) -> Prediction:
        """Score one application: probability of default and the accept/refuse decision."""
        check_client_id(SPEC, client_id)
        return self.scoring.score(application.model_dump(), "predict", client_id)

    @bentoml.api(route="/predict_batch")
    def predict_batch(
        self, applications: Annotated[list[Application], Field(min_length=1)]
    ) -> BatchPrediction:
        """Score up to `max_batch_size` applications in one call."""
        return self.scoring.score_batch([a.model_dump() for a in applications])

    @bentoml.api(route="/explain")
    async def explain(
        self,
        application: Application,
        client_id: ClientId | None = None,
    ) -> Explanation:
        """Score one application and explain it: signed SHAP values and reasons in words."""
        check_client_id(SPEC, client_id)
        return self.scoring.explain(application.model_dump(), "explain", client_id)


def _record_access(record: dict[str, Any]) -> None:
    bentoml.get_current_service().record_access(record)  # this worker's instance


CreditScoring.add_asgi_middleware(  # type: ignore[attr-defined]
    ApiGuard,
    max_body_bytes=SPEC.limits.max_body_bytes,
    on_reject=count_rejected,
    extra_openapi=partial(openapi.extend, operations=OPERATIONS),
    verifier=lambda: Verifier(AuthSettings()),
    on_access=_record_access,
)
