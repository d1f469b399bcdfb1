"""The OpenAPI document's additions, generated from the routes' models (no trained model
needed: a document shaped like BentoML's, and the contract's columns)."""

from __future__ import annotations

import copy
from typing import Any

from credit_scoring.serving import openapi
from credit_scoring.serving.queries import PAGE_LIMIT, SAMPLE_LIMIT, Columns
from credit_scoring.serving.routes import clients, model
from credit_scoring.serving.schemas import CLIENT_ID_PATTERN

COLUMNS = Columns(
    id_column="client_id",
    numeric=["AMT_CREDIT", "AMT_INCOME_TOTAL"],
    categories={"NAME_CONTRACT_TYPE": ["Cash loans", "Revolving loans"]},
)
BENTOML = {
    "paths": {
        path: {"post": {"operationId": path.strip("/"), "responses": {"200": {}}}}
        for path in ("/predict", "/predict_batch", "/explain")
    }
    | {"/healthz": {"get": {"responses": {"200": {}}}}},
    "components": {"schemas": {"Prediction": {"title": "Prediction"}}},
}


def document(with_clients: bool = True) -> dict[str, Any]:
    operations = (*(clients.operations(COLUMNS) if with_clients else ()), *model.operations())
    return openapi.extend(copy.deepcopy(BENTOML), operations)


def _parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation["parameters"]}


def test_every_route_is_documented_with_its_guard_answers() -> None:
    doc = document()
    assert set(doc["paths"]) == {
        "/predict",
        "/predict_batch",
        "/explain",
        "/healthz",
        "/clients/{client_id}/score",
        "/clients/{client_id}/explain",
        "/clients/search",
        "/clients/population",
        "/model/card",
    }
    for path in ("/predict", "/predict_batch", "/explain"):
        responses = doc["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "403", "413", "415", "422", "503"} <= set(responses)
    for path, item in doc["paths"].items():
        for operation in item.values():
            if path == "/healthz":  # open
                assert "security" not in operation and "401" not in operation["responses"]
            else:
                assert operation["security"] == [{"bearer": []}], path
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = doc["components"]["schemas"]["ApiError"]
    assert error["required"] == ["error"] and "errors" in error["properties"]
    assert {"field", "rule", "message"} <= set(
        doc["components"]["schemas"]["FieldProblem"]["required"]
    )


def test_parameters_and_responses_come_from_the_models() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    score = doc["paths"]["/clients/{client_id}/score"]["get"]
    client_id = _parameters(score)["client_id"]
    assert client_id["in"] == "path" and client_id["required"] is True
    assert client_id["schema"] == {"type": "string", "pattern": CLIENT_ID_PATTERN}
    assert set(score["responses"]) == {"200", "401", "403", "404", "422", "503"}
    ok = score["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert "observed_at" in schemas[ok.rsplit("/", 1)[1]]["properties"]
    explained = doc["paths"]["/clients/{client_id}/explain"]["get"]["responses"]["200"]
    assert explained["content"]["application/json"]["schema"]["$ref"].endswith("ClientExplanation")
    assert "FeatureContribution" in schemas  # a model the explanation uses

    search = _parameters(doc["paths"]["/clients/search"]["get"])
    assert list(search) == ["client_id_prefix", "limit", "offset", "columns"]
    assert not any(p["required"] for p in search.values())
    assert search["client_id_prefix"]["schema"] == {"type": "string", "pattern": "^[0-9a-f]{1,64}$"}
    assert search["limit"]["schema"]["maximum"] == PAGE_LIMIT
    assert search["columns"]["schema"]["items"]["enum"] == COLUMNS.all
    population = _parameters(doc["paths"]["/clients/population"]["get"])
    assert population["features"]["required"] is True
    assert population["features"]["schema"]["maxItems"] == 4
    assert population["sample"]["schema"]["maximum"] == SAMPLE_LIMIT
    assert "eq:<COLUMN>" in doc["paths"]["/clients/search"]["get"]["description"]

    card = doc["paths"]["/model/card"]["get"]["responses"]["200"]
    assert card["content"]["application/json"]["schema"]["$ref"].endswith("/ModelCard")
    assert "global_importance" in schemas["ModelCard"]["properties"]


def test_a_model_without_client_ids_has_no_client_routes() -> None:
    assert not any(path.startswith("/clients") for path in document(with_clients=False)["paths"])
    assert "/model/card" in document(with_clients=False)["paths"]
