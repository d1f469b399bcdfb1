"""``/model/card``: what the advisors' model page shows (it needs no client)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from credit_scoring.core.spec import ServingSpec
from credit_scoring.serving.openapi import Operation
from credit_scoring.serving.queries import Columns
from credit_scoring.serving.routes import current
from credit_scoring.serving.schemas import ColumnUse, FeatureImportance, Filters, ModelCard

TOP_FEATURES = 25


def model_card(spec: ServingSpec, columns: Columns) -> ModelCard:
    """Version, metrics, threshold and costs, global importance, and the data the model uses
    (the contract's minimised list)."""
    card = spec.card
    importance = sorted((card.get("global_importance") or {}).items(), key=lambda kv: -float(kv[1]))
    return ModelCard(
        model_name=spec.model_name,
        model_version=spec.model_version,
        candidate=spec.candidate,
        threshold=spec.threshold,
        lineage=spec.lineage,
        test_metrics=card.get("test_metrics", {}),
        dummy_metrics=card.get("dummy_metrics", {}),
        cost=card.get("cost", {}),
        importance_method=card.get("importance_method"),
        global_importance=[
            FeatureImportance(feature=name, importance=float(value))
            for name, value in importance[:TOP_FEATURES]
        ],
        data_used=[
            ColumnUse(
                column=name,
                description=column.description,
                sensitive=column.sensitive,
                filterable=name in columns.all,
            )
            for name, column in spec.contract.columns.items()
        ],
        filters=Filters(categories=columns.categories, numeric=columns.numeric),
    )


async def card(request: Request) -> JSONResponse:
    service = current()
    return JSONResponse(model_card(service.spec, service.columns).model_dump())


def app() -> Starlette:
    return Starlette(routes=[Route("/card", card, methods=["GET"])])


def operations() -> tuple[Operation, ...]:
    """This route in the OpenAPI document."""
    return (
        Operation(
            "/model/card",
            "model_card",
            "Advisor",
            "The served model's card: version, test metrics, threshold and business costs, "
            "global feature importance, the data it uses.",
            ModelCard,
        ),
    )
