"""The admin API's errors as answers: one JSON shape, `{"error", "detail"?, "suggestions"?}`,
for refusals, things not found and bad input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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
MEANINGS = {
    400: "The request is not valid (a header, a parameter)",
    401: "No valid credential (missing, malformed, unknown, expired or revoked)",
    403: "The token's scope does not allow this",
    404: "Not found",
    408: "The request took longer than [serve] request_timeout",
    413: "The body is larger than [serve] max_body",
    422: "The request is not valid",
    429: "Too many requests: wait Retry-After seconds",
    502: "The provider refused or failed",
    503: "Not available: [connections] is not configured, or the database is unreachable",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each a `Problem`."""
    return {s: {"model": Problem, "description": MEANINGS[s]} for s in statuses}


RESPONSES = answers(400, 401, 403, 404, 422, 429, 502, 503)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install(api: FastAPI) -> None:
    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        names = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        body = {"error": names.get(error.status_code, "error")}
        if error.status_code == 400 and isinstance(error.detail, str):
            body["detail"] = error.detail  # FastAPI's own words: "error parsing the body"
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette names the methods of the first route on the path (none, for a route
            # of an included router); several serve some paths.
            headers["Allow"] = ", ".join(_methods(api, request))
        return JSONResponse(body, error.status_code, headers=headers)

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


def publish(api: FastAPI) -> None:
    """Publish the answers' real shapes: a 422 is a `Problem` here (naming where and what
    was wrong), not FastAPI's list of errors, which would echo the values sent."""

    def schema() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(title=api.title, version=api.version, routes=api.routes)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["HTTPValidationError"] = Problem.model_json_schema()
            schemas.pop("ValidationError", None)
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = schema  # type: ignore[method-assign]


def _methods(api: FastAPI, request: Request) -> list[str]:
    """The methods some route serves the request's path with: those it fully matches."""
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in api.routes
        )
    ]
