"""`GET /metrics`: Prometheus' text format, for a scraper holding a `read` API token
(Prometheus: `authorization: {credentials_file: ...}`). It carries counts and durations
by job, tier and provider, never a secret; the token keeps job names off a service that
cloud schedulers reach from the internet."""

# No `from __future__ import annotations`: FastAPI reads the handler's annotations, and the
# scope dependency is local to `router`.

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from cronlink.observe import metrics
from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.web.api_auth import caller

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def router(service: "WebService") -> APIRouter:
    routes = APIRouter()
    Reader = Annotated[ApiToken, Depends(caller(service, Scope.READ))]

    @routes.get("/metrics", include_in_schema=False)
    async def scrape(token: Reader) -> Response:
        snapshot = await service.store.snapshot(service.clock.now())
        return Response(metrics.exposition(snapshot), media_type=CONTENT_TYPE_LATEST)

    return routes
