"""``/clients``: a known client's score or explanation by pseudonym, a search of the client
feature store, comparison groups. Mounted only when the data has client ids
(``data_contract.id_column``)."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from credit_scoring.serving.openapi import Operation
from credit_scoring.serving.queries import (
    Columns,
    QueryError,
    parse_population,
    parse_search,
    query_models,
)
from credit_scoring.serving.routes import current, error
from credit_scoring.serving.schemas import (
    CLIENT_ID_PATTERN,
    ClientExplanation,
    ClientPage,
    ClientPath,
    ClientPrediction,
    ComparisonGroup,
)
from credit_scoring.serving.telemetry import touched_client
from credit_scoring.storage.clients import ClientFeatureStore
from credit_scoring.storage.database import jsonable


async def score(request: Request) -> JSONResponse:
    return await _one_client(request, "score")


async def explain(request: Request) -> JSONResponse:
    return await _one_client(request, "explain")


async def _one_client(request: Request, action: str) -> JSONResponse:
    client_id = request.path_params["client_id"]
    if not re.fullmatch(CLIENT_ID_PATTERN, client_id):
        return error(
            422,
            "client_id must be a pseudonymised id (64 lowercase hex characters), not a raw id.",
            errors=[{"field": "path.client_id", "rule": "pattern", "message": CLIENT_ID_PATTERN}],
        )
    touched_client(client_id)
    service = current()
    record = await run_in_threadpool(_store().lookup, client_id)
    if record is None:
        return error(
            404,
            f"No client with id {client_id} in the client feature store. Check the id, or "
            "score the application with POST /predict.",
        )
    features, observed_at = record
    seen = observed_at.isoformat() if observed_at else None
    body: ClientPrediction | ClientExplanation
    if action == "explain":
        explained = service.scoring.explain(features, "clients_explain", client_id)
        body = ClientExplanation(**explained.model_dump(), observed_at=seen)
    else:
        scored = service.scoring.score(features, "clients_score", client_id)
        body = ClientPrediction(**scored.model_dump(), observed_at=seen)
    return JSONResponse(body.model_dump(mode="json"))


async def search(request: Request) -> JSONResponse:
    """A page of known clients matching the filters (ids, when observed, a few columns)."""
    try:
        query = parse_search(request.query_params, current().columns)
    except QueryError as exc:
        return JSONResponse(exc.body(), status_code=422)
    total, rows = await run_in_threadpool(
        _store().search, query.filters, query.columns, query.limit, query.offset
    )
    page = ClientPage(
        total=total, limit=query.limit, offset=query.offset, columns=query.columns, clients=rows
    )
    return JSONResponse(page.model_dump())


async def population(request: Request) -> JSONResponse:
    """A comparison group: a sample of the clients matching the filters, with the chosen
    features and each client's score and decision (not stored as prediction events: the
    group is described, nobody's application is decided)."""
    service = current()
    try:
        query = parse_population(request.query_params, service.columns)
    except QueryError as exc:
        return JSONResponse(exc.body(), status_code=422)
    total, records = await run_in_threadpool(_store().sample, query.filters, query.size)
    scores: list[float] = []
    if records:
        scores = list(await run_in_threadpool(service.scorer.probabilities, records))
    rows = [
        {
            **{name: record.get(name) for name in query.features},
            "probability": float(score),
            "decision": service.scorer.decision(float(score)),
        }
        for record, score in zip(records, scores, strict=True)
    ]
    group = ComparisonGroup(
        total=total,
        sample_size=len(rows),
        features=query.features,
        threshold=service.spec.threshold,
        rows=[jsonable(row) for row in rows],
    )
    return JSONResponse(group.model_dump())


def _store() -> ClientFeatureStore:
    clients = current().clients
    assert clients is not None  # these routes are mounted only when clients have ids
    return clients


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/search", search, methods=["GET"]),
            Route("/population", population, methods=["GET"]),
            Route("/{client_id}/score", score, methods=["GET"]),
            Route("/{client_id}/explain", explain, methods=["GET"]),
        ]
    )


def operations(columns: Columns) -> tuple[Operation, ...]:
    """These routes in the OpenAPI document."""
    search_query, population_query = query_models(columns)
    # The filters cannot be typed parameters (their names carry a column): described in words.
    filters = (
        "Filters: `eq:<COLUMN>=<category>` (repeatable), `min:<COLUMN>=<number>`, "
        f"`max:<COLUMN>=<number>`; categories: {sorted(columns.categories)}, numbers: "
        f"{sorted(columns.numeric)}."
    )
    by_id = {"404": "Unknown client", "422": "Malformed client id"}
    invalid = {"422": "Invalid query parameter(s)"}
    return (
        Operation(
            "/clients/{client_id}/score",
            "clients_score",
            "Service APIs",
            "Score a known client from the feature store.",
            ClientPrediction,
            path_params=ClientPath,
            errors=by_id,
        ),
        Operation(
            "/clients/{client_id}/explain",
            "clients_explain",
            "Service APIs",
            "Explain a known client from the feature store.",
            ClientExplanation,
            path_params=ClientPath,
            errors=by_id,
        ),
        Operation(
            "/clients/search",
            "clients_search",
            "Advisor",
            "A page of known clients matching the filters. " + filters,
            ClientPage,
            query=search_query,
            errors=invalid,
        ),
        Operation(
            "/clients/population",
            "clients_population",
            "Advisor",
            "A comparison group: a sample of the clients matching the filters, with the chosen "
            "features and each one's score and decision. " + filters,
            ComparisonGroup,
            query=population_query,
            errors=invalid,
        ),
    )
