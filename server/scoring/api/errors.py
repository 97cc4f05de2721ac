"""Error responses that never echo or log feature values.

Validation errors list ``loc``/``msg``/``type`` only (pydantic's ``input`` is
dropped). A value-like error that escapes validation (ValueError, TypeError, ...)
still becomes a 4xx, and is logged by type and route only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger("fedctr.serve")

VALUE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    UnicodeError,
    RecursionError,
)


def error_items(errors: Iterable[dict[str, Any]], prefix: tuple[str, ...] = ()) -> list[dict]:
    return [
        {
            "loc": [*prefix, *(p for p in e.get("loc", ()))],
            "msg": str(e.get("msg", "invalid value")),
            "type": str(e.get("type", "value_error")),
        }
        for e in errors
    ]


def rejected_response(request: Request, exc: BaseException) -> JSONResponse:
    log.warning("rejected request to %s: %s", request.url.path, type(exc).__name__)
    return JSONResponse(
        status_code=400,
        content={"detail": f"request could not be scored ({type(exc).__name__})"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers (in ExceptionMiddleware: handled, not re-raised and logged)."""

    async def on_request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": error_items(exc.errors())})

    async def on_value_error(request: Request, exc: Exception) -> JSONResponse:
        return rejected_response(request, exc)

    app.add_exception_handler(RequestValidationError, on_request_validation)
    for cls in VALUE_ERRORS:
        app.add_exception_handler(cls, on_value_error)


__all__ = [
    "VALUE_ERRORS",
    "error_items",
    "install_error_handlers",
    "rejected_response",
]
