"""The scoring API (BentoML): ``bentoml serve credit_scoring.serving.service:CreditScoring``.

Routes: POST /predict, /predict_batch, /explain; GET /clients/{client_id}/score and
/clients/{client_id}/explain; GET /healthz, /readyz, /metrics (BentoML's own). The champion
and its ``serving_spec.json`` come from the BentoML model store (``make build``); request
models are generated from the data contract frozen in that spec.
"""

from __future__ import annotations

import gc
import logging
import re
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from credit_scoring.auth.tokens import AuthSettings, Verifier
from credit_scoring.core.spec import LINEAGE_KEYS, SPEC_FILE, ServingSpec
from credit_scoring.serving import bentoml_fixes
from credit_scoring.serving.http import ERROR_SCHEMA, ApiGuard, required_roles
from credit_scoring.serving.queries import (
    PAGE_LIMIT,
    SAMPLE_LIMIT,
    Columns,
    QueryError,
    parse_population,
    parse_search,
)
from credit_scoring.serving.schemas import (
    CLIENT_ID_PATTERN,
    BatchItem,
    BatchPrediction,
    ClientId,
    Explanation,
    FeatureContribution,
    Prediction,
)
from credit_scoring.serving.scorer import Scorer
from credit_scoring.serving.settings import ServingSettings
from credit_scoring.serving.telemetry import REQUEST_ID, touched_client
from credit_scoring.storage.clients import ClientFeatureStore
from credit_scoring.storage.database import jsonable, utc_now
from credit_scoring.storage.events import EventStore
from credit_scoring.storage.journal import time_ordered_id
from credit_scoring.storage.schema import AUDIT_TABLE

logger = logging.getLogger(__name__)
bentoml_fixes.apply()

settings = ServingSettings()
champion = bentoml.models.BentoModel(settings.model_tag)
SPEC = ServingSpec.load(champion.stored.path_of(SPEC_FILE))
if TYPE_CHECKING:
    Application = BaseModel  # generated from the data contract at import time
else:
    Application = SPEC.request_model()
ID_COLUMN = SPEC.contract.pseudonymised_id_column
IMAGE = settings.image or None  # an image built without a reference sets ""
# Clients can be looked up by id only when the data has one (data_contract.id_column).
HAS_CLIENTS = SPEC.contract.id_column is not None
COLUMNS = Columns.of(SPEC.contract)  # what advisors may filter on and see

PROBABILITY = bentoml.metrics.Histogram(
    name="credit_scoring_predicted_probability",
    documentation="Predicted probability of default of scored applications",
    buckets=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
DECISIONS = bentoml.metrics.Counter(
    name="credit_scoring_decisions",
    documentation="Decisions returned, by outcome",
    labelnames=["decision"],
)
REJECTED = bentoml.metrics.Counter(
    name="credit_scoring_rejected_requests",
    documentation="Requests refused, by reason (invalid, too_large, not_json, not_found, ...) "
    "and route template (`other` for a path that matches no route)",
    labelnames=["reason", "endpoint"],
)
JOURNALED = bentoml.metrics.Counter(
    name="credit_scoring_events_journaled",
    documentation="Prediction events written to the worker's journal (before the response); "
    "minus credit_scoring_events_stored_total: the events not in the database yet",
)
MODEL_INFO = bentoml.metrics.Gauge(
    name="credit_scoring_model_info",
    documentation="The model being served (value 1): its registry version, its lineage (MLflow "
    "run, training commit, data hash) and the image serving it",
    labelnames=["model_name", "model_version", "candidate", *LINEAGE_KEYS, "image"],
    multiprocess_mode="max",
)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(BentoMLException):
    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def _check_client_id(client_id: str | None) -> None:
    if client_id is not None and not HAS_CLIENTS:
        raise Unprocessable(
            "client_id: this model's data has no client id (data_contract.id_column is null); "
            "leave client_id out."
        )
    touched_client(client_id)


# The access audit trail of this worker (set when the service starts in the worker).
AUDIT: list[EventStore] = []


def _log_access(record: dict[str, Any]) -> None:
    for store in AUDIT:
        store.record(record)


def _request_id() -> str:
    """The id the API guard gave this request (also in ``X-Request-ID`` and the event)."""
    return REQUEST_ID.get() or time_ordered_id()


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _client_score(request: Request) -> JSONResponse:
    return await _client_route(request, "score")


async def _client_explain(request: Request) -> JSONResponse:
    return await _client_route(request, "explain")


async def _client_route(request: Request, action: str) -> JSONResponse:
    client_id = request.path_params["client_id"]
    if not re.fullmatch(CLIENT_ID_PATTERN, client_id):
        return _error(
            422,
            "client_id must be a pseudonymised id (64 lowercase hex characters), not a raw id.",
            errors=[{"field": "path.client_id", "rule": "pattern", "message": CLIENT_ID_PATTERN}],
        )
    touched_client(client_id)
    service, clients = _clients_service()
    record = await run_in_threadpool(clients.lookup, client_id)
    if record is None:
        return _error(
            404,
            f"No client with id {client_id} in the client feature store. Check the id, or "
            "score the application with POST /predict.",
        )
    features, observed_at = record
    body: Prediction
    if action == "explain":
        body = service.explain_record(features, "clients_explain", client_id)
    else:
        body = service.score_record(features, "clients_score", client_id)
    payload = body.model_dump(mode="json")
    payload["observed_at"] = observed_at.isoformat() if observed_at else None
    return JSONResponse(payload)


def _clients_service() -> tuple[CreditScoring, ClientFeatureStore]:
    service: CreditScoring = bentoml.get_current_service()
    assert service.clients is not None  # the routes are mounted only when clients have ids
    return service, service.clients


async def _client_search(request: Request) -> JSONResponse:
    """A page of known clients matching the filters (ids, when observed, a few columns)."""
    try:
        query = parse_search(request.query_params, COLUMNS)
    except QueryError as exc:
        return JSONResponse(exc.body(), status_code=422)
    _, clients = _clients_service()
    total, rows = await run_in_threadpool(
        clients.search, query.filters, query.columns, query.limit, query.offset
    )
    return JSONResponse(
        {
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
            "columns": query.columns,
            "clients": rows,
        }
    )


async def _client_population(request: Request) -> JSONResponse:
    """A comparison group: a sample of the clients matching the filters, with the chosen
    features and each client's score and decision (not stored as prediction events: the
    group is described, nobody's application is decided)."""
    try:
        query = parse_population(request.query_params, COLUMNS)
    except QueryError as exc:
        return JSONResponse(exc.body(), status_code=422)
    service, clients = _clients_service()
    total, records = await run_in_threadpool(clients.sample, query.filters, query.size)
    scores: list[float] = []
    if records:
        scores = list(await run_in_threadpool(service.scorer.probabilities, records))
    rows = [
        {
            **{name: record.get(name) for name in query.features},
            "probability": float(score),
            "decision": "refuse" if service.scorer.refuse(float(score)) else "accept",
        }
        for record, score in zip(records, scores, strict=True)
    ]
    return JSONResponse(
        {
            "total": total,
            "sample_size": len(rows),
            "features": query.features,
            "threshold": SPEC.threshold,
            "rows": [jsonable(row) for row in rows],
        }
    )


async def _model_card(request: Request) -> JSONResponse:
    """What the advisors' model page shows: version, metrics, threshold and costs, global
    importance, and the data the model uses (the contract's minimised list)."""
    card = SPEC.card
    importance = sorted((card.get("global_importance") or {}).items(), key=lambda kv: -float(kv[1]))
    return JSONResponse(
        {
            "model_name": SPEC.model_name,
            "model_version": SPEC.model_version,
            "candidate": SPEC.candidate,
            "threshold": SPEC.threshold,
            "lineage": SPEC.lineage,
            "test_metrics": card.get("test_metrics", {}),
            "dummy_metrics": card.get("dummy_metrics", {}),
            "cost": card.get("cost", {}),
            "importance_method": card.get("importance_method"),
            "global_importance": [
                {"feature": name, "importance": float(value)} for name, value in importance[:25]
            ],
            "data_used": [
                {
                    "column": name,
                    "description": column.description,
                    "sensitive": column.sensitive,
                    "filterable": name in COLUMNS.all,
                }
                for name, column in SPEC.contract.columns.items()
            ],
            "filters": {"categories": COLUMNS.categories, "numeric": COLUMNS.numeric},
        }
    )


clients_app = Starlette(
    routes=[
        Route("/search", _client_search, methods=["GET"]),
        Route("/population", _client_population, methods=["GET"]),
        Route("/{client_id}/score", _client_score, methods=["GET"]),
        Route("/{client_id}/explain", _client_explain, methods=["GET"]),
    ]
)
model_app = Starlette(routes=[Route("/card", _model_card, methods=["GET"])])


def _openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """Document what the guard adds: 413/422 bodies and the client lookup routes."""
    ref = {"$ref": "#/components/schemas/ApiError"}
    error = {"application/json": {"schema": ref}}
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    components["ApiError"] = ERROR_SCHEMA
    for path, item in spec.get("paths", {}).items():
        post = item.get("post")
        if post and path.startswith(("/predict", "/explain")):
            post["responses"]["400"] = {"description": "Bad Request", "content": error}
            post["responses"]["413"] = {"description": "Body or batch too large", "content": error}
            post["responses"]["415"] = {"description": "Body is not JSON", "content": error}
            post["responses"]["422"] = {"description": "Invalid field(s)", "content": error}
    for action, model in (("score", Prediction), ("explain", Explanation)) if HAS_CLIENTS else ():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
        spec["paths"][f"/clients/{{client_id}}/{action}"] = {
            "get": {
                "operationId": f"clients_{action}",
                "tags": ["Service APIs"],
                "description": f"{action.capitalize()} a known client from the feature store.",
                "parameters": [
                    {
                        "name": "client_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": CLIENT_ID_PATTERN},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                            }
                        },
                    },
                    "404": {"description": "Unknown client", "content": error},
                    "422": {"description": "Malformed client id", "content": error},
                },
            }
        }
    paths = spec.setdefault("paths", {})
    if HAS_CLIENTS:
        paths.update(_advisor_paths(error))
    paths["/model/card"] = {
        "get": {
            "operationId": "model_card",
            "tags": ["Advisor"],
            "description": "The served model's card: version, test metrics, threshold and "
            "business costs, global feature importance, the data it uses.",
            "responses": {"200": {"description": "OK", "content": _any_object()}},
        }
    }
    spec["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for path, item in paths.items():
        if required_roles(path) is None:
            continue
        for operation in item.values():
            operation["security"] = [{"bearer": []}]
            operation.setdefault("responses", {})
            operation["responses"]["401"] = {"description": "No valid token", "content": error}
            operation["responses"]["403"] = {"description": "Role not allowed", "content": error}
            operation["responses"]["503"] = {
                "description": "The identity provider cannot be reached",
                "content": error,
            }
    return spec


def _any_object() -> dict[str, Any]:
    return {"application/json": {"schema": {"type": "object"}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _advisor_paths(error: dict[str, Any]) -> dict[str, Any]:
    filters = (
        "Filters: `eq:<COLUMN>=<category>` (repeatable), `min:<COLUMN>=<number>`, "
        f"`max:<COLUMN>=<number>`; categories: {sorted(COLUMNS.categories)}, numbers: "
        f"{sorted(COLUMNS.numeric)}."
    )
    common = [
        _query(
            "client_id_prefix",
            {"type": "string", "pattern": r"^[0-9a-f]{1,64}$"},
            "the start of a pseudonymised id",
        ),
    ]
    columns = {"type": "array", "items": {"type": "string", "enum": COLUMNS.all}}
    responses = {
        "200": {"description": "OK", "content": _any_object()},
        "422": {"description": "Invalid query parameter(s)", "content": error},
    }
    return {
        "/clients/search": {
            "get": {
                "operationId": "clients_search",
                "tags": ["Advisor"],
                "description": "A page of known clients matching the filters. " + filters,
                "parameters": [
                    *common,
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": PAGE_LIMIT},
                        "clients per page",
                    ),
                    _query(
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 10_000_000},
                        "clients skipped",
                    ),
                    _query("columns", columns, "columns listed (default: a few)"),
                ],
                "responses": responses,
            }
        },
        "/clients/population": {
            "get": {
                "operationId": "clients_population",
                "tags": ["Advisor"],
                "description": "A comparison group: a sample of the clients matching the "
                "filters, with the chosen features and each one's score and decision. " + filters,
                "parameters": [
                    *common,
                    {
                        **_query(
                            "features",
                            {**columns, "minItems": 1, "maxItems": 4},
                            "1 to 4 columns to compare",
                        ),
                        "required": True,
                    },
                    _query(
                        "sample",
                        {"type": "integer", "minimum": 1, "maximum": SAMPLE_LIMIT},
                        "largest sample",
                    ),
                ],
                "responses": responses,
            }
        },
    }


def _client_routes(cls: Any) -> Any:
    return bentoml.asgi_app(clients_app, path="/clients")(cls) if HAS_CLIENTS else cls


@bentoml.asgi_app(model_app, path="/model")
@_client_routes
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
    """Scores loan applications with the champion model and explains its decisions."""

    model = champion

    def __init__(self) -> None:
        # BentoML's logging config keeps other loggers at WARNING: our INFO lines (start-up,
        # one line per refused request, events taken over from a stopped worker) are wanted
        logging.getLogger("credit_scoring").setLevel(settings.log_level)
        self.spec = SPEC
        self.scorer = Scorer(SPEC, Path(self.model.path))
        database = settings.require_database_url()
        self.clients = ClientFeatureStore(database, ID_COLUMN) if HAS_CLIENTS else None
        self.events: EventStore | None = None
        if settings.log_events:
            self.events = EventStore(
                database,
                batch_size=settings.event_batch_size,
                flush_seconds=settings.event_flush_seconds,
                journal=settings.event_journal_dir,
            )
        # who read which client's data: same journal-then-ship design as the events
        self.audit = EventStore(
            database,
            batch_size=settings.event_batch_size,
            flush_seconds=settings.event_flush_seconds,
            journal=settings.event_journal_dir,
            table=AUDIT_TABLE,
        )
        AUDIT[:] = [self.audit]
        self.scorer.explain(self._example())  # warm the explainer before /readyz says yes
        if settings.freeze_gc:
            # Everything loaded so far (mlflow, pandas, the model...) lives as long as the
            # process: keep it out of the garbage collector's full passes, which otherwise
            # stop a worker for 100+ ms at random and make the p99 latency.
            gc.collect()
            gc.freeze()
        MODEL_INFO.labels(
            model_name=SPEC.model_name,
            model_version=SPEC.model_version,
            candidate=SPEC.candidate,
            image=IMAGE or "none",
            **{key: SPEC.lineage.get(key, "unknown") for key in LINEAGE_KEYS},
        ).set(1)
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
        AUDIT.clear()
        self.audit.close()
        if self.events is not None:
            self.events.close()
        if self.clients is not None:
            self.clients.close()

    # --- API ----------------------------------------------------------------------------

    @bentoml.api(route="/predict")
    async def predict(
        self,
        application: Application,
        client_id: ClientId | None = None,
    ) -> Prediction:
        """Score one application: probability of default and the accept/refuse decision."""
        _check_client_id(client_id)
        return self.score_record(application.model_dump(), "predict", client_id)

    @bentoml.api(route="/predict_batch")
    def predict_batch(
        self, applications: Annotated[list[Application], Field(min_length=1)]
    ) -> BatchPrediction:
        """Score up to `max_batch_size` applications in one call."""
        limit = SPEC.limits.max_batch_size
        if len(applications) > limit:
            raise PayloadTooLarge(
                f"{len(applications)} applications in one batch; the limit is {limit}. "
                "Split the batch."
            )
        records = [a.model_dump() for a in applications]
        scores = self.scorer.probabilities(records)
        request_id = _request_id()
        items = []
        events = []
        for record, score in zip(records, scores, strict=True):
            decision = self._observe(float(score))
            items.append(BatchItem(probability=float(score), decision=decision))
            events.append(self._event("predict_batch", request_id, None, record, score, decision))
        if self.events is not None:
            self.events.record_many(events)
            JOURNALED.inc(len(events))
        return BatchPrediction(predictions=items, **self._about(request_id))

    @bentoml.api(route="/explain")
    async def explain(
        self,
        application: Application,
        client_id: ClientId | None = None,
    ) -> Explanation:
        """Score one application and explain it: signed SHAP values and reasons in words."""
        _check_client_id(client_id)
        return self.explain_record(application.model_dump(), "explain", client_id)

    # --- shared -------------------------------------------------------------------------

    def score_record(
        self, record: dict[str, Any], endpoint: str, client_id: str | None
    ) -> Prediction:
        probability = self.scorer.probability(record)
        decision = self._observe(probability)
        request_id = _request_id()
        if self.events is not None:
            self.events.record(
                self._event(endpoint, request_id, client_id, record, probability, decision)
            )
            JOURNALED.inc()
        return Prediction(probability=probability, decision=decision, **self._about(request_id))

    def explain_record(
        self, record: dict[str, Any], endpoint: str, client_id: str | None
    ) -> Explanation:
        result = self.scorer.explain(record)
        decision = self._observe(result.probability)
        request_id = _request_id()
        if self.events is not None:
            self.events.record(
                self._event(endpoint, request_id, client_id, record, result.probability, decision)
            )
            JOURNALED.inc()
        return Explanation(
            probability=result.probability,
            decision=decision,
            base_value=result.base_value,
            units=result.units,
            contributions=[
                FeatureContribution(feature=c.feature, value=c.value, shap_value=c.shap_value)
                for c in result.contributions
            ],
            reasons=self.scorer.reasons(result),
            **self._about(request_id),
        )

    def _observe(self, probability: float) -> str:
        decision = "refuse" if self.scorer.refuse(probability) else "accept"
        PROBABILITY.observe(probability)
        DECISIONS.labels(decision=decision).inc()
        return decision

    def _about(self, request_id: str) -> dict[str, Any]:
        return {
            "threshold": SPEC.threshold,
            "model_name": SPEC.model_name,
            "model_version": SPEC.model_version,
            "request_id": request_id,
        }

    def _event(
        self,
        endpoint: str,
        request_id: str,
        client_id: str | None,
        record: dict[str, Any],
        probability: float,
        decision: str,
    ) -> dict[str, Any]:
        return {
            "event_time": utc_now(),
            "request_id": request_id,
            "endpoint": endpoint,
            "client_id": client_id,
            "model_name": SPEC.model_name,
            "model_version": SPEC.model_version,
            "features": record,
            "probability": float(probability),
            "decision": decision,
            "threshold": SPEC.threshold,
            "mlflow_run_id": SPEC.run_id,
            "image": IMAGE,
        }

    def _example(self) -> dict[str, Any]:
        return {name: None for name in SPEC.contract.columns}


CreditScoring.add_asgi_middleware(  # type: ignore[attr-defined]
    ApiGuard,
    max_body_bytes=SPEC.limits.max_body_bytes,
    on_reject=lambda reason, endpoint: REJECTED.labels(reason=reason, endpoint=endpoint).inc(),
    extra_openapi=_openapi,
    verifier=lambda: Verifier(AuthSettings()),
    on_access=_log_access,
)
