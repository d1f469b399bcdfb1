"""Fixes to BentoML 1.4, installed by ``apply()`` before BentoML builds the app.

1. Request metrics labelled by route template, not by path (``telemetry.RouteMetrics``):
   bounded series, no pseudonym in a label.
2. ``log_exception`` without the path and without a traceback for a refused (4xx) request
   (``telemetry.log_exception``); the API guard logs refusals as one line.
3. The request timeout, found while chasing the API's p99 latency:

``bentoml._internal.server.http.traffic.TimeoutMiddleware`` arms ``loop.call_later(timeout)``
for every request and never cancels it. The timer handle holds the request's context (its
OpenTelemetry span, scope, futures) until the timeout expires: with the default 60 s and
1,000 requests/s a worker keeps ~60,000 finished requests alive. They reach the garbage
collector's oldest generation, whose full passes then stop the worker for 100-300 ms: the
p99 tail of a plain BentoML service. This subclass cancels the timer when the request ends;
the behaviour (504 after ``traffic.timeout``) is unchanged. Measured in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

import _bentoml_impl.server.app as service_app
from bentoml._internal.server.http import instruments, traffic
from starlette.responses import JSONResponse

from credit_scoring.serving import telemetry

_ORIGINAL = traffic.TimeoutMiddleware


class CancellingTimeoutMiddleware(_ORIGINAL):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if fut.cancel():
                resp = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await resp(scope, receive, send)
        else:
            await fut
        finally:
            timer.cancel()  # the fix: the handle no longer keeps the request alive


def apply() -> None:
    """Install the fixes (idempotent); BentoML looks these up when it builds the app."""
    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware  # type: ignore[misc]
    instruments.RunnerTrafficMetricsMiddleware = telemetry.RouteMetrics  # type: ignore[misc,assignment]
    service_app.log_exception = telemetry.log_exception
