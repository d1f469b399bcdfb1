"""The API's HTTP edge: the shared guard (``auth.guard``) plus what only the API does.

On top of bearer tokens, roles and the body limit: every request gets a request id
(``X-Request-ID``, and ``request_id`` in every body); a POST that is not JSON gets 415;
BentoML's answer to a pydantic validation error (HTTP 400 and a list of pydantic errors)
becomes the API's contract, HTTP 422 with, for each problem, the field path, the rule that
failed and a message; each answered request of an authenticated caller that reads clients'
data is written to the access audit trail; ``/docs.json`` is completed by ``openapi.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from credit_scoring.auth.guard import (
    ASGIApp,
    HttpGuard,
    Message,
    Receive,
    Refusal,
    Reply,
    Scope,
    Send,
    Wording,
    json_response,
)
from credit_scoring.auth.tokens import Identity, Verifier
from credit_scoring.serving.telemetry import ACCESS, REQUEST_ID, Access, route_template
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.journal import time_ordered_id

logger = logging.getLogger("credit_scoring.serving")

WORDING = Wording(
    unauthenticated="Authentication required: send a valid bearer token (`Authorization: "
    "Bearer <token>`) from your identity provider; in development, `make token ROLE=advisor "
    "SUB=<you>`.",
    too_large="The request body is larger than {limit} bytes. Send fewer applications per "
    "request (see max_batch_size).",
)
NOT_JSON = "Send the body as JSON with `Content-Type: application/json`."
NO_ROUTE = "No such route: the API's routes are listed at /docs (/docs.json)."
AccessLog = Callable[[dict[str, Any]], None]
# Which roles may call a path, by prefix (the first match wins). A path under a prefix that
# matches no route still needs a token: an anonymous caller learns nothing from a 404.
ROUTE_ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("/clients", frozenset({"advisor"})),
    ("/predict", frozenset({"advisor", "scoring"})),
    ("/explain", frozenset({"advisor", "scoring"})),
    ("/model", frozenset({"advisor", "scoring"})),
)


def audited(path: str, access: Access) -> bool:
    """Whether a request is an access to clients' stored data: a route under /clients (one
    client, a search, a comparison group), or a scoring request that names a client. Scoring
    an application that names no one is recorded as its prediction event, not here: auditing
    every such call cost ~10% of /predict's throughput for no one's data (docs/benchmarks.md).
    """
    return path.startswith("/clients") or access.client_id is not None


def required_roles(path: str) -> frozenset[str] | None:
    """The roles that may call ``path``; None for an open route (health, metrics, docs)."""
    for prefix, roles in ROUTE_ROLES:
        if path == prefix or path.startswith((f"{prefix}/", f"{prefix}_")):
            return roles
    return None


def _field_path(loc: list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def validation_error(errors: list[dict[str, Any]]) -> dict[str, Any]:
    problems = [
        {
            "field": _field_path(list(e.get("loc") or [])),
            "rule": str(e.get("type", "invalid")),
            "message": str(e.get("msg", "invalid value")),
        }
        for e in errors
    ]
    fields = ", ".join(p["field"] for p in problems[:5])
    return {
        "error": f"{len(problems)} invalid field(s): {fields}. Fix the value(s) as each message "
        "says; the allowed fields, types, bounds and categories are in the OpenAPI "
        "schema at /docs.json.",
        "errors": problems,
    }


class ApiGuard(HttpGuard):
    """The API's guard, added with ``add_asgi_middleware`` (BentoML builds it in each worker).

    With a ``verifier``, the routes of ``ROUTE_ROLES`` need a bearer token with one of their
    roles, checked before the body is read; each answered request of an authenticated
    caller that accesses clients' data (``audited``) goes to ``on_access`` (the access audit
    trail): who, when, which route template, which client (when the route set one), and the
    status. Cheap on the success path: 2xx responses are not buffered.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        on_reject: Callable[[Refusal], None] | None = None,
        extra_openapi: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        verifier: Callable[[], Verifier] | None = None,
        on_access: AccessLog | None = None,
    ) -> None:
        super().__init__(
            app,
            max_body_bytes,
            # built here, in the worker: a refused configuration stops the worker at start-up
            authenticator=verifier() if verifier is not None else None,
            required_roles=required_roles,
            on_reject=on_reject,
            endpoint=route_template,
            wording=WORDING,
            logger=logger,
        )
        self.extra_openapi = extra_openapi
        self.on_access = on_access or (lambda record: None)

    def reply(self, scope: Scope, send: Send) -> _Responder:
        return _Responder(send, scope, self, time_ordered_id())

    async def guard(self, scope: Scope, receive: Receive, reply: Reply) -> None:
        assert isinstance(reply, _Responder)
        token = REQUEST_ID.set(reply.request_id)
        try:
            await super().guard(scope, receive, reply)
        finally:
            REQUEST_ID.reset(token)

    async def authorise(
        self,
        scope: Scope,
        receive: Receive,
        reply: Reply,
        identity: Identity,
        roles: frozenset[str],
    ) -> None:
        access = Access(identity.subject, ",".join(sorted(identity.roles)))
        token = ACCESS.set(access)
        try:
            await super().authorise(scope, receive, reply, identity, roles)
        finally:
            ACCESS.reset(token)
            if audited(scope["path"], access):
                self._audit(scope, REQUEST_ID.get() or "", access, reply.status or 500)

    async def admit(self, scope: Scope, receive: Receive, reply: Reply) -> None:
        if scope["method"] == "POST" and not _is_json(scope):
            await reply.refuse(415, NOT_JSON)
            return
        if scope["path"] == "/docs.json" and scope["method"] == "GET" and self.extra_openapi:
            await self._openapi(scope, receive, reply)
            return
        await super().admit(scope, receive, reply)

    def _audit(self, scope: Scope, request_id: str, access: Access, status: int) -> None:
        try:
            self.on_access(
                {
                    "event_time": utc_now(),
                    "request_id": request_id,
                    "subject": access.subject,
                    "roles": access.roles,
                    "method": scope.get("method", "")[:8],
                    "route": route_template(scope)[:64],
                    "client_id": access.client_id,
                    "status": status,
                }
            )
        except Exception:  # the audit journal failed: say so loudly, but the answer is sent
            logger.exception("Could not write the access audit record (request %s)", request_id)

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        captured: list[Message] = []

        async def keep(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, keep)
        raw = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        assert self.extra_openapi is not None
        start, body = json_response(200, self.extra_openapi(json.loads(raw)))
        await send(start)
        await send(body)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # no Content-Type: read as JSON, like BentoML does


class _Responder(Reply):
    """The shared reply, plus the request id on every response and BentoML's refusals in
    the API's error format."""

    def __init__(self, send: Send, scope: Scope, guard: HttpGuard, request_id: str) -> None:
        super().__init__(send, scope, guard)
        self.request_id = request_id
        self.header = (b"x-request-id", request_id.encode())

    def start(self, message: Message) -> Message:
        message["headers"] = [*message.get("headers", ()), self.header]
        return message

    def annotate(self, body: dict[str, Any]) -> dict[str, Any]:
        body["request_id"] = self.request_id
        return body

    def rewrite(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = {"error": raw.decode(errors="replace")}
        if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict):
            body = body[0]  # BentoML wraps its exception messages in a list
        if not isinstance(body, dict):
            body = {"error": str(body)}
        if self.status == 400 and isinstance(body.get("detail"), list):
            return 422, validation_error(body["detail"])
        if "error" not in body:
            body = {"error": str(body.get("detail") or body)}
        if self.status == 404 and body["error"] == "Not Found":  # no route has this path
            body["error"] = NO_ROUTE
        body.pop("detail", None)
        return self.status, body
