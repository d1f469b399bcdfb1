"""The HTTP guard of the project's web apps (the scoring API, the retrain trigger).

A pure ASGI middleware. Before the app sees a request: a bearer token where the route needs
one (401 with ``WWW-Authenticate`` without a valid one, 403 without an allowed role, 503 when
the issuer's keys cannot be fetched), then the body limit (413, on the declared length and
while reading, before any parsing). Every refusal, the guard's own or a 4xx answered by the
app, leaves as a JSON error body, goes to ``on_reject`` as a ``Refusal`` (bounded values
only: a reason and a route template, never the path, the token or the body) and is logged
as one INFO line.

How a token is checked is pluggable (``Authenticator``): the API verifies JWTs from its
identity provider (``tokens.Verifier``), the trigger compares Alertmanager's shared token
(``SharedToken``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from credit_scoring.auth.tokens import Identity, IssuerUnavailable, TokenError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "other"  # the route template of a path that matches no route
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
FORBIDDEN = "Your token does not carry a role that may use this route."
UNAVAILABLE = "The identity provider cannot be reached to check your token; try again."


class Authenticator(Protocol):
    """Who a bearer token speaks for; raises ``TokenError`` (401) or ``IssuerUnavailable``."""

    def verify(self, token: str) -> Identity: ...


class SharedToken:
    """One secret shared with the caller (a webhook's ``Authorization: Bearer``), compared in
    constant time: the time a wrong guess takes says nothing about the secret."""

    def __init__(self, secret: str, identity: Identity) -> None:
        self._secret = secret.encode()
        self._identity = identity

    def verify(self, token: str) -> Identity:
        if not hmac.compare_digest(token.encode(), self._secret):
            raise TokenError("wrong")
        return self._identity


@dataclass(frozen=True)
class Refusal:
    """A refused request as telemetry sees it: bounded values only."""

    method: str
    endpoint: str  # the route template, or ``UNMATCHED``
    status: int
    reason: str


@dataclass(frozen=True)
class Wording:
    """The messages of the guard's own refusals (``{limit}``: the body limit in bytes)."""

    unauthenticated: str = "Authentication required: send a valid bearer token."
    too_large: str = "The request body is larger than {limit} bytes."
    realm: str = "credit-scoring"


def json_response(status: int, body: dict[str, Any]) -> tuple[Message, Message]:
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


class HttpGuard:
    """Authentication, roles and the body limit in front of an ASGI app.

    ``required_roles(path)``: the roles that may call a path (None: open). With no
    ``authenticator`` every route is open. Subclasses add steps by overriding ``guard``
    (the whole request), ``authorise`` (an authenticated caller) or ``admit`` (a request
    past authentication), and the response side with ``reply``.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        authenticator: Authenticator | None = None,
        required_roles: Callable[[str], frozenset[str] | None] = lambda path: None,
        on_reject: Callable[[Refusal], None] | None = None,
        endpoint: Callable[[Scope], str] = lambda scope: UNMATCHED,
        wording: Wording = Wording(),
        logger: logging.Logger | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.authenticator = authenticator
        self.required_roles = required_roles
        self.on_reject = on_reject or (lambda refusal: None)
        self.endpoint = endpoint
        self.wording = wording
        self.logger = logger or logging.getLogger(__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.guard(scope, receive, self.reply(scope, send))

    def reply(self, scope: Scope, send: Send) -> Reply:
        return Reply(send, scope, self)

    async def guard(self, scope: Scope, receive: Receive, reply: Reply) -> None:
        roles = self.required_roles(scope["path"]) if self.authenticator is not None else None
        if roles is None:
            await self.admit(scope, receive, reply)
            return
        identity = await self.authenticate(scope, reply)
        if identity is not None:
            await self.authorise(scope, receive, reply, identity, roles)

    async def authenticate(self, scope: Scope, reply: Reply) -> Identity | None:
        """The caller's identity, or None once the refusal is sent (the token is never
        logged: the reason is a bounded label)."""
        assert self.authenticator is not None
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
        scheme, _, credentials = (header or b"").decode("latin-1").partition(" ")
        if header is None or scheme.lower() != "bearer":
            await reply.refuse(401, self.wording.unauthenticated, reason="no_token")
            return None
        try:
            return self.authenticator.verify(credentials.strip())
        except TokenError as exc:
            await reply.refuse(401, self.wording.unauthenticated, reason=f"token_{exc.reason}")
        except IssuerUnavailable:
            self.logger.error("The identity provider's keys could not be fetched (JWKS URL)")
            await reply.refuse(503, UNAVAILABLE, reason="issuer_unavailable")
        return None

    async def authorise(
        self,
        scope: Scope,
        receive: Receive,
        reply: Reply,
        identity: Identity,
        roles: frozenset[str],
    ) -> None:
        if identity.roles & roles:
            await self.admit(scope, receive, reply)
        else:
            await reply.refuse(403, FORBIDDEN)

    async def admit(self, scope: Scope, receive: Receive, reply: Reply) -> None:
        """A request past authentication: its body within the limit, then the app."""
        if scope["method"] == "POST":
            body = await self.read_body(scope, receive, reply)
            if body is None:
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, reply)

    async def read_body(self, scope: Scope, receive: Receive, reply: Reply) -> bytes | None:
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await self._too_large(reply)
                    return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(reply)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, reply: Reply) -> None:
        await reply.refuse(413, self.wording.too_large.format(limit=self.max_body_bytes))

    def refused(
        self, scope: Scope, status: int, body: dict[str, Any], reason: str | None = None
    ) -> None:
        """Count and log one refusal (called once per refused request)."""
        refusal = Refusal(
            method=str(scope.get("method", ""))[:16],
            endpoint=self.endpoint(scope),
            status=status,
            reason=reason or REASONS.get(status, "client_error"),
        )
        self.on_reject(refusal)
        request_id = body.get("request_id")
        suffix = f" (request {request_id})" if request_id else ""
        self.logger.info(
            "Refused %s %s: %d %s [%s]%s",
            refusal.method,
            refusal.endpoint,
            status,
            refusal.reason,
            _rule(body),
            suffix,
        )


class Reply:
    """The response side of a guarded request: 2xx/3xx pass through untouched, every 4xx
    (the guard's or the app's) leaves as a JSON error body, counted and logged once."""

    def __init__(self, send: Send, scope: Scope, guard: HttpGuard) -> None:
        self.send = send
        self.scope = scope
        self.guard = guard
        self.status = 0
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if not 400 <= self.status < 500:
                await self.send(self.start(message))
            return
        if not 400 <= self.status < 500 or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status, body = self.rewrite(b"".join(self.chunks))
        await self.refuse(status, body)

    async def refuse(
        self, status: int, body: str | dict[str, Any], reason: str | None = None
    ) -> None:
        """Answer a refusal: the error body, one log line, one count."""
        body = self.annotate({"error": body} if isinstance(body, str) else body)
        self.status = status
        self.guard.refused(self.scope, status, body, reason)
        start, payload = json_response(status, body)
        start = self.start(start)
        if status == 401:
            challenge = f'Bearer realm="{self.guard.wording.realm}"'.encode()
            start["headers"].append((b"www-authenticate", challenge))
        await self.send(start)
        await self.send(payload)

    def start(self, message: Message) -> Message:
        """The response's start message (a hook: headers every response carries)."""
        return message

    def annotate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The error body as sent (a hook: fields every refusal carries)."""
        return body

    def rewrite(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        """The app's 4xx body in the error format: ``{"error": ...}``."""
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = {"error": raw.decode(errors="replace")}
        if not isinstance(body, dict):
            body = {"error": str(body)}
        if "error" not in body:
            body = {"error": str(body.get("detail") or body)}
        return self.status, body


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
