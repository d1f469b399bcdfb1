"""What the service tells operators: request metrics, refusal lines, error logs.

Telemetry records a request by its **route template** (``/clients/{client_id}/score``), never
by its path: a path may hold a client's pseudonym (personal data, which must not reach
metrics or logs that the event purge does not govern), and any path a scanner invents
would otherwise become a new metric series. Every path that matches no route is ``other``.

BentoML 1.4 labels its request metrics with the raw path (``scope["path"]``): 10,000 random
URLs made ~200,000 series, and ``/metrics`` timed out until restart. ``RouteMetrics`` keeps
BentoML's metric names and labels and puts the template in ``endpoint``; ``bentoml_fixes``
installs it in place of BentoML's middleware.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Sequence
from timeit import default_timer
from typing import Any

from pydantic import ValidationError
from starlette.routing import Match

from credit_scoring.auth.guard import UNMATCHED, ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("credit_scoring.serving")

_SCOPE_KEY = "credit_scoring.route"
_STATIC: dict[str, str] = {}  # paths of parameter-free routes: at most one per route

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "credit_scoring_request_id", default=None
)


class Access:
    """Who is calling (from the token) and which client's data the route touched: the route
    sets ``client_id`` once the id is valid, the guard writes the audit record."""

    __slots__ = ("client_id", "roles", "subject")

    def __init__(self, subject: str, roles: str) -> None:
        self.subject = subject
        self.roles = roles
        self.client_id: str | None = None


ACCESS: contextvars.ContextVar[Access | None] = contextvars.ContextVar(
    "credit_scoring_access", default=None
)


def touched_client(client_id: str | None) -> None:
    """Record, for the access audit, that this request read ``client_id``'s data."""
    access = ACCESS.get()
    if access is not None and client_id is not None:
        access.client_id = client_id


def _match(routes: Sequence[Any], scope: Scope, prefix: str) -> str | None:
    """The template of the route Starlette would pick (a PARTIAL match: another method)."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        path = prefix + getattr(route, "path", "")
        children = getattr(route, "routes", None)
        if children is not None:  # a mount: the template of the route inside it
            template = _match(children, {**scope, **child}, path) if children else None
            path = template or f"{path}/{{path}}"  # a mount without routes: static files
        if match == Match.FULL:
            return path
        partial = partial or path
    return partial


def route_template(scope: Scope) -> str:
    """The template of the route a request goes to, or ``other``; computed once a request."""
    cached = scope.get(_SCOPE_KEY)
    if cached is not None:
        return str(cached)
    path = scope.get("path", "")
    template = _STATIC.get(path)
    if template is None:
        app = scope.get("app")
        router = getattr(app, "router", None)
        found = _match(router.routes, scope, "") if router is not None else None
        template = found or UNMATCHED
        if found == path:
            _STATIC[path] = template  # bounded: only paths that are routes themselves
    scope[_SCOPE_KEY] = template
    return template


def is_client_error(exc: BaseException | None) -> bool:
    """A refusal (4xx) as BentoML raises it: invalid input, or its exception below 500."""
    if isinstance(exc, ValidationError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", 500)
    return isinstance(code, int) and 400 <= code < 500


def log_exception(request: Any, exc_info: Any = True) -> None:
    """BentoML's ``log_exception``, without the path and without 4xx tracebacks.

    A refused request is logged as one line by the API guard; an error is logged with its
    traceback and the route template.
    """
    if is_client_error(sys.exc_info()[1]):
        return
    logger.error(
        "Exception on %s [%s] (request %s)",
        route_template(request.scope),
        request.method,
        REQUEST_ID.get(),
        exc_info=exc_info,
    )


class RouteMetrics:
    """BentoML's request metrics (same names and labels), labelled by route template."""

    def __init__(
        self,
        app: ASGIApp,
        namespace: str = "bentoml_api_server",
        skip_paths: Sequence[str] = ("/metrics", "/healthz", "/livez", "/readyz"),
    ) -> None:
        self.app = app
        self.namespace = namespace
        self.skip_paths = tuple(skip_paths)
        self._ready = False

    def _setup(self) -> None:
        from bentoml._internal.configuration.containers import BentoMLContainer
        from bentoml._internal.context import server_context

        client = BentoMLContainer.metrics_client.get()
        labels = ["endpoint", "service_name", "service_version", "http_response_code"]
        self.total = client.Counter(
            namespace=self.namespace,
            name="request_total",
            documentation="Total number of HTTP requests, by route template",
            labelnames=[*labels, "runner_name"],
        )
        self.duration = client.Histogram(
            namespace=self.namespace,
            name="request_duration_seconds",
            documentation="HTTP request duration in seconds, by route template",
            labelnames=[*labels, "runner_name"],
            buckets=BentoMLContainer.duration_buckets.get(),
        )
        self.in_progress = client.Gauge(
            namespace=self.namespace,
            name="request_in_progress",
            documentation="HTTP requests in progress now, by route template",
            labelnames=["endpoint", "service_name", "service_version", "runner_name"],
            multiprocess_mode="livesum",
        )
        self.last_request = client.Gauge(
            namespace=self.namespace,
            name="last_request_timestamp_seconds",
            documentation="Timestamp of the last received request",
            labelnames=["service_name", "service_version", "runner_name"],
        )
        self.service = {
            "service_name": server_context.bento_name,
            "service_version": server_context.bento_version,
            "runner_name": server_context.service_name,
        }
        self.last_request_child = self.last_request.labels(**self.service)
        # labelled children, bound once: keys are (route template, status), a bounded set
        self._finished: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._running: dict[str, Any] = {}
        self._ready = True

    def _finished_children(self, endpoint: str, status: int) -> tuple[Any, Any]:
        children = self._finished.get((endpoint, status))
        if children is None:
            labels = {"endpoint": endpoint, "http_response_code": status, **self.service}
            children = (self.total.labels(**labels), self.duration.labels(**labels))
            self._finished[(endpoint, status)] = children
        return children

    def _running_child(self, endpoint: str) -> Any:
        child = self._running.get(endpoint)
        if child is None:
            child = self._running[endpoint] = self.in_progress.labels(
                endpoint=endpoint, **self.service
            )
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        if not self._ready:
            self._setup()
        endpoint = route_template(scope)
        if not scope["path"].startswith(self.skip_paths):
            self.last_request_child.set_to_current_time()
        start = default_timer()
        status = 0

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                total, duration = self._finished_children(endpoint, status)
                total.inc()
                duration.observe(max(default_timer() - start, 0.0))
            await send(message)

        gauge = self._running_child(endpoint)
        gauge.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            gauge.dec()
