"""HTTP edges of the service: body limit (413), clear validation errors (422), OpenAPI.

BentoML answers a pydantic validation error with HTTP 400 and a list of pydantic errors; this
ASGI middleware turns it into the API's contract: HTTP 422 with, for each problem, the field
path, the rule that failed and a message. Bodies above the configured size are refused with
413 before any parsing. Every refusal is counted in a Prometheus counter by reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
    404: "not_found",
    413: "too_large",
    415: "not_json",
    422: "invalid",
}


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


class ApiGuard:
    """Pure ASGI middleware: cheap on the success path (no buffering of 2xx responses)."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        on_reject: Callable[[str], None] | None = None,
        extra_openapi: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_reject = on_reject or (lambda reason: None)
        self.extra_openapi = extra_openapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "POST":
            if not _is_json(scope):
                await self._refuse(
                    send, 415, "Send the body as JSON with `Content-Type: application/json`."
                )
                return
            body = await self._read_body(scope, receive, send)
            if body is None:
                return
            receive = _replay(body, receive)
        if scope["path"] == "/docs.json" and self.extra_openapi is not None:
            await self._openapi(scope, receive, send)
            return
        await self.app(scope, receive, _ErrorRewriter(send, self.on_reject))

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
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

    async def _too_large(self, send: Send) -> None:
        await self._refuse(
            send,
            413,
            f"The request body is larger than {self.max_body_bytes} bytes. Send fewer "
            "applications per request (see max_batch_size).",
        )

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        self.on_reject(REASONS[status])
        start, body = _json_response(status, {"error": message})
        await send(start)
        await send(body)

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


class _ErrorRewriter:
    """Pass 2xx/3xx through untouched; give every 4xx the API's error body."""

    def __init__(self, send: Send, on_reject: Callable[[str], None]) -> None:
        self.send = send
        self.on_reject = on_reject
        self.status = 0
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if not 400 <= self.status < 500:
                await self.send(message)
            return
        if not 400 <= self.status < 500 or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status, body = self._rewrite(b"".join(self.chunks))
        self.on_reject(REASONS.get(status, "client_error"))
        start, payload = _json_response(status, body)
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
        body.pop("detail", None)
        return self.status, body
