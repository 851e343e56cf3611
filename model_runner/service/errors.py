"""The JSON error body every failure uses, and the handlers that produce it.

Domain errors carry their own status (``model_runner.errors.TweetpulseError``); errors of libraries
below the HTTP layer (the database driver, the file system) map through one table here.

Every error response is ``{"error": {"type": ..., "message": ...}}`` (``ErrorBody``); a traceback
never leaves the process. Messages are written for the caller and never contain secrets.
"""

from __future__ import annotations

import logging
import math

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from model_runner.errors import TweetpulseError

log = logging.getLogger(__name__)


class ApiError(TweetpulseError):
    """An HTTP-level error raised by a route, with optional headers and extra body fields."""

    status = 400
    type = "bad_request"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, type_: str | None = None, **extra
    ):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if type_ is not None:
            self.type = type_
        self.extra = extra  # more machine-readable fields next to type and message (e.g. job_id)

    def details(self) -> dict:
        return self.extra


class Unauthorized(ApiError):
    status, type = 401, "unauthorized"


class Forbidden(ApiError):
    status, type = 403, "forbidden"


class NotFound(ApiError):
    status, type = 404, "not_found"


class Conflict(ApiError):
    status, type = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, type = 413, "payload_too_large"


class Unprocessable(ApiError):
    status, type = 422, "invalid_request"


class TooManyRequests(ApiError):
    status, type = 429, "overloaded"


class ClientClosedRequest(ApiError):
    status, type = 499, "client_closed_request"  # nginx's code: nobody reads it


class ModelNotLoaded(ApiError):
    status, type = 503, "model_not_loaded"


class Unavailable(ApiError):
    status, type = 503, "unavailable"


class ModelInvalid(ApiError):
    status, type = 422, "model_invalid"


# Exceptions of libraries below the HTTP layer, and the status each one means. A database that does
# not answer (down, restarting, pool exhausted, statement timeout) is a 503 with Retry-After: the
# request was fine and may be repeated.
STATUS_OF: dict[type[Exception], tuple[int, str]] = {
    psycopg.OperationalError: (503, "database_unavailable"),
    psycopg.InterfaceError: (503, "database_unavailable"),
    PoolTimeout: (503, "database_unavailable"),
    FileNotFoundError: (404, "not_found"),
}

_STARLETTE_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ErrorDetail(BaseModel):
    """What went wrong: `type` for programs, `message` for people, and any more fields of the error
    (e.g. `job_id` of a conflicting job, `results` of a refused reload)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Machine-readable kind: unauthorized, forbidden, invalid_request, ...")
    message: str = Field(description="For the caller; never holds secrets.")


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"error": {"type": "unauthorized", "message": "this route needs a bearer token"}}]
        },
    )

    error: ErrorDetail


def error_body(type_: str, message: str, **extra) -> dict:
    return ErrorBody(error=ErrorDetail(type=type_, message=message, **extra)).model_dump(mode="json")


def error_response(
    status: int, type_: str, message: str, headers: dict | None = None, **extra
) -> JSONResponse:
    return JSONResponse(error_body(type_, message, **extra), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TweetpulseError)
    async def _domain_error(_: Request, exc: TweetpulseError):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.retry_after_s is not None and "Retry-After" not in headers:
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        return error_response(exc.status, exc.type, message, headers or None, **exc.details())

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return error_response(422, "invalid_request", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        type_ = _STARLETTE_TYPES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, type_, str(exc.detail), getattr(exc, "headers", None))

    for exc_type, (status, type_) in STATUS_OF.items():

        def _handler(request: Request, exc: Exception, status=status, type_=type_):
            headers = {"Retry-After": "5"} if status == 503 else None
            message = str(exc)
            if type_ == "database_unavailable":
                # driver messages name hosts and users: they go to the log, not to the caller
                log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
                message = "the database is not reachable right now; retry later"
            return error_response(status, type_, message, headers)

        app.add_exception_handler(exc_type, _handler)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # the detail goes to the log, never to the caller
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the service log")
