"""The admin API's errors as answers: one JSON shape, `{"error", "detail"?, "suggestions"?}`,
for refusals, things not found and bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cronlink.errors import (
    AutomationNotFoundError,
    ConfigError,
    ConnectionNotFoundError,
    ConnectionUnusableError,
    CronSyntaxError,
    RefreshError,
    RunNotFoundError,
    TokenNotFoundError,
    UnknownJobError,
)
from cronlink.web.api_auth import Refused
from cronlink.web.api_models import Problem

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

NOT_FOUND: tuple[type[Exception], ...] = (
    AutomationNotFoundError,
    ConnectionNotFoundError,
    RunNotFoundError,
    TokenNotFoundError,
)
INVALID: tuple[type[Exception], ...] = (ConfigError, CronSyntaxError, ConnectionUnusableError)
RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "description": text}
    for status, text in (
        (401, "No valid API token (missing, malformed, unknown, expired or revoked)"),
        (403, "The token's scope does not allow this"),
        (404, "Not found"),
        (422, "The request is not valid"),
        (429, "Too many requests: wait Retry-After seconds"),
        (502, "The provider refused or failed (a refresh)"),
        (503, "Connections are not configured ([connections] in cronlink.toml)"),
    )
}


def install(api: FastAPI) -> None:
    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        name = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        return JSONResponse({"error": name}, error.status_code, headers=error.headers)

    @api.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> JSONResponse:
        return JSONResponse({"error": error.error}, error.status, headers=error.headers)

    @api.exception_handler(UnknownJobError)
    async def unknown_job(request: Request, error: UnknownJobError) -> JSONResponse:
        body = {"error": "not_found", "detail": str(error), "suggestions": error.suggestions}
        return JSONResponse(body, 404)

    for kind in NOT_FOUND:

        @api.exception_handler(kind)
        async def not_found(request: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"error": "not_found", "detail": str(error)}, 404)

    for invalid_kind in INVALID:

        @api.exception_handler(invalid_kind)
        async def invalid(request: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"error": "invalid_request", "detail": str(error)}, 422)

    @api.exception_handler(RefreshError)
    async def refresh_failed(request: Request, error: RefreshError) -> JSONResponse:
        # The provider refused or failed: not this service's fault, and not the caller's.
        body = {"error": "refresh_failed", "detail": f"{error.kind}: {error}"}
        return JSONResponse(body, 502)

    @api.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        # Where and what, never the value sent (it may be a secret pasted in the wrong field).
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(problems)}, 422)
