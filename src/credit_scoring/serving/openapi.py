"""The API's OpenAPI document (``/docs.json``): BentoML's, completed with what it cannot see.

BentoML documents the ``@bentoml.api`` methods from their pydantic signatures. It does not
see the Starlette routes mounted beside them (``/clients/*``, ``/model/card``), nor what the
HTTP guard answers before a request reaches BentoML. The mounted routes are documented here
from the pydantic models they answer with and read (``Operation``: response, path and query
parameters), and the error body from ``schemas.ApiError``. Written by hand, because no model
carries them: which status codes the guard answers (``GUARD_ERRORS``, ``AUTH_ERRORS``) and the
bearer scheme.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from credit_scoring.serving.http import required_roles
from credit_scoring.serving.schemas import ApiError

REF = "#/components/schemas/{model}"
# What the guard answers to a POST before BentoML reads it (or instead of BentoML's 400).
GUARD_ERRORS = {
    "400": "Bad Request",
    "413": "Body or batch too large",
    "415": "Body is not JSON",
    "422": "Invalid field(s)",
}
# What the guard answers on a route that needs a token.
AUTH_ERRORS = {
    "401": "No valid token",
    "403": "Role not allowed",
    "503": "The identity provider cannot be reached",
}
BEARER = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}


@dataclass(frozen=True)
class Operation:
    """A GET route of a mounted app, as its models describe it."""

    path: str
    operation_id: str
    tag: str
    description: str
    response: type[BaseModel]
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: Mapping[str, str] = field(default_factory=dict)  # status -> description


def extend(document: dict[str, Any], operations: Sequence[Operation]) -> dict[str, Any]:
    """BentoML's ``document`` with the guard's answers, ``operations`` and the bearer scheme."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    error = _content(_component(ApiError, components))
    paths = document.setdefault("paths", {})
    for path, item in paths.items():
        post = item.get("post")
        if post and path.startswith(("/predict", "/explain")):
            post["responses"].update(_responses(GUARD_ERRORS, error))
    for operation in operations:
        paths[operation.path] = {"get": _operation(operation, components, error)}
    document["components"]["securitySchemes"] = BEARER
    for path, item in paths.items():
        if required_roles(path) is None:
            continue
        for method in item.values():
            method["security"] = [{"bearer": []}]
            method.setdefault("responses", {}).update(_responses(AUTH_ERRORS, error))
    return document


def _operation(
    operation: Operation, components: dict[str, Any], error: dict[str, Any]
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "description": operation.description,
    }
    parameters = [
        *_parameters(operation.path_params, "path", components),
        *_parameters(operation.query, "query", components),
    ]
    if parameters:
        document["parameters"] = parameters
    ok = {"description": "OK", "content": _content(_component(operation.response, components))}
    document["responses"] = {"200": ok, **_responses(operation.errors, error)}
    return document


def _component(model: type[BaseModel], components: dict[str, Any]) -> dict[str, str]:
    """``model``'s JSON schema (and the models it uses) as components; a reference to it."""
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _parameters(
    model: type[BaseModel] | None, where: str, components: dict[str, Any]
) -> list[dict[str, Any]]:
    """One parameter per field of ``model``: its schema, its description, whether required."""
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.pop("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _not_null({k: v for k, v in prop.items() if k != "title"})
        description = prop.pop("description", None)
        parameter = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": prop,
        }
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter's schema without pydantic's ``null`` branch: a query string
    leaves the parameter out, it cannot send null."""
    options = schema.get("anyOf") or []
    rest = [o for o in options if o != {"type": "null"}]
    if len(options) != 2 or len(rest) != 1:
        return schema
    schema = {k: v for k, v in schema.items() if k != "anyOf"}
    if schema.get("default", ...) is None:
        del schema["default"]
    return {**schema, **rest[0]}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(described: Mapping[str, str], error: dict[str, Any]) -> dict[str, Any]:
    return {status: {"description": text, "content": error} for status, text in described.items()}
