"""HTTP edges of the service: request ids, body limit (413), clear errors (422), OpenAPI.

BentoML answers a pydantic validation error with HTTP 400 and a list of pydantic errors; this
ASGI middleware turns it into the API's contract: HTTP 422 with, for each problem, the field
path, the rule that failed and a message. Bodies above the configured size are refused with
413 before any parsing. Every request gets a request id (``X-Request-ID``, and ``request_id``
in every body); every refusal is counted by reason and route template, and logged as one
line at INFO: status, reason, route template, request id (no path, no body, no traceback).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from credit_scoring.auth.tokens import Identity, IssuerUnavailable, TokenError, Verifier
from credit_scoring.serving.telemetry import (
    ACCESS,
    REQUEST_ID,
    Access,
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    route_template,
)
from credit_scoring.storage.database import utc_now
from credit_scoring.storage.journal import time_ordered_id

logger = logging.getLogger("credit_scoring.serving")

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ApiError",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong and how to fix it"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "rule", "message"],
                "properties": {
                    "field": {"type": "string", "description": "path of the field, dotted"},
                    "rule": {"type": "string", "description": "the rule that failed"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
REASONS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    413: "too_large",
    415: "not_json",
    422: "invalid",
    503: "unavailable",
}
UNAUTHENTICATED = (
    "Authentication required: send a valid bearer token (`Authorization: Bearer <token>`) from "
    "your identity provider; in development, `make token ROLE=advisor SUB=<you>`."
)
FORBIDDEN = "Your token does not carry a role that may use this route."
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


def _json_response(status: int, body: dict[str, Any]) -> tuple[Message, Message]:
    payload = json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": payload, "more_body": False}


def _rule(body: dict[str, Any]) -> str:
    """What was refused, for the log line: the failing rules by field (never the values)."""
    problems = body.get("errors") or []
    return ",".join(f"{p['field']}:{p['rule']}" for p in problems[:3]) or "-"


Reject = Callable[[Scope, int, dict[str, Any], str | None], None]


class ApiGuard:
    """Pure ASGI middleware: cheap on the success path (no buffering of 2xx responses).

    With a ``verifier``, the routes of ``ROUTE_ROLES`` need a bearer token with one of their
    roles (401 without a valid one, 403 with the wrong role), checked before the body is
    read; each answered request of an authenticated caller that accesses clients' data
    (``audited``) goes to ``on_access`` (the access audit trail): who, when, which route
    template, which client (when the route set one), and the status.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        on_reject: Callable[[str, str], None] | None = None,
        extra_openapi: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        verifier: Callable[[], Verifier] | None = None,
        on_access: AccessLog | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_reject = on_reject or (lambda reason, endpoint: None)
        self.extra_openapi = extra_openapi
        # built here, in the worker: a refused configuration stops the worker at start-up
        self.verifier = verifier() if verifier is not None else None
        self.on_access = on_access or (lambda record: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = time_ordered_id()
        token = REQUEST_ID.set(request_id)
        responder = _Responder(send, scope, request_id, self._refused)
        try:
            roles = required_roles(scope["path"]) if self.verifier is not None else None
            if roles is None:
                await self._handle(scope, receive, responder)
                return
            identity = await self._authenticate(scope, responder)
            if identity is None:
                return
            access = Access(identity.subject, ",".join(sorted(identity.roles)))
            access_token = ACCESS.set(access)
            try:
                if identity.roles & roles:
                    await self._handle(scope, receive, responder)
                else:
                    await responder.refuse(403, FORBIDDEN)
            finally:
                ACCESS.reset(access_token)
                if audited(scope["path"], access):
                    self._audit(scope, request_id, access, responder.status or 500)
        finally:
            REQUEST_ID.reset(token)

    async def _authenticate(self, scope: Scope, send: _Responder) -> Identity | None:
        assert self.verifier is not None
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        scheme, _, credentials = (header or b"").decode("latin-1").partition(" ")
        if header is None or scheme.lower() != "bearer":
            await send.refuse(401, UNAUTHENTICATED, reason="no_token")
            return None
        try:
            return self.verifier.verify(credentials.strip())
        except TokenError as exc:
            await send.refuse(401, UNAUTHENTICATED, reason=f"token_{exc.reason}")
        except IssuerUnavailable:
            logger.error("The identity provider's keys could not be fetched (JWKS URL)")
            await send.refuse(
                503,
                "The identity provider cannot be reached to check your token; try again.",
                reason="issuer_unavailable",
            )
        return None

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

    async def _handle(self, scope: Scope, receive: Receive, send: _Responder) -> None:
        if scope["method"] == "POST":
            if not _is_json(scope):
                await send.refuse(
                    415, "Send the body as JSON with `Content-Type: application/json`."
                )
                return
            body = await self._read_body(scope, receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
        if scope["path"] == "/docs.json" and self.extra_openapi is not None:
            await self._openapi(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refused(
        self, scope: Scope, status: int, body: dict[str, Any], reason: str | None = None
    ) -> None:
        reason = reason or REASONS.get(status, "client_error")
        endpoint = route_template(scope)
        self.on_reject(reason, endpoint)
        logger.info(
            "Refused %s %s: %d %s [%s] (request %s)",
            scope.get("method"),
            endpoint,
            status,
            reason,
            _rule(body),
            body.get("request_id"),
        )

    async def _read_body(self, scope: Scope, receive: Receive, send: _Responder) -> bytes | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await self._too_large(send)
                    return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: _Responder) -> None:
        await send.refuse(
            413,
            f"The request body is larger than {self.max_body_bytes} bytes. Send fewer "
            "applications per request (see max_batch_size).",
        )

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        captured: list[Message] = []

        async def keep(message: Message) -> None:
            captured.append(message)

        await self.app(scope, receive, keep)
        raw = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        assert self.extra_openapi is not None
        start, body = _json_response(200, self.extra_openapi(json.loads(raw)))
        await send(start)
        await send(body)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # no Content-Type: read as JSON, like BentoML does


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Responder:
    """The response side of a request: adds ``X-Request-ID``, passes 2xx/3xx through
    untouched, and gives every 4xx the API's error body (with the request id)."""

    def __init__(self, send: Send, scope: Scope, request_id: str, on_refused: Reject) -> None:
        self.send = send
        self.scope = scope
        self.request_id = request_id
        self.header = (b"x-request-id", request_id.encode())
        self.on_refused = on_refused
        self.status = 0
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if not 400 <= self.status < 500:
                message["headers"] = [*message.get("headers", ()), self.header]
                await self.send(message)
            return
        if not 400 <= self.status < 500 or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status, body = self._rewrite(b"".join(self.chunks))
        await self.refuse(status, body)

    async def refuse(
        self, status: int, body: str | dict[str, Any], reason: str | None = None
    ) -> None:
        """Answer a refusal: the error body, the request id, one log line, one count."""
        body = {"error": body} if isinstance(body, str) else body
        body["request_id"] = self.request_id
        self.status = status
        self.on_refused(self.scope, status, body, reason)
        start, payload = _json_response(status, body)
        start["headers"].append(self.header)
        if status == 401:
            start["headers"].append((b"www-authenticate", b'Bearer realm="credit-scoring"'))
        await self.send(start)
        await self.send(payload)

    def _rewrite(self, raw: bytes) -> tuple[int, dict[str, Any]]:
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
            body["error"] = "No such route: the API's routes are listed at /docs (/docs.json)."
        body.pop("detail", None)
        return self.status, body
