"""Routes mounted beside the service's API methods, one module per resource.

A handler reaches the worker's service instance (its stores, its scorer) through
``current()``: the apps are built when the class is defined, the instance later, in the
worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bentoml
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from credit_scoring.serving.service import CreditScoring


def current() -> CreditScoring:
    service: CreditScoring = bentoml.get_current_service()
    return service


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)
