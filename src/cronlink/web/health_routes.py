"""`/healthz` (the process answers) and `/readyz` (the database answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cronlink.errors import StoreError
from cronlink.web.api_models import Health

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def router(service: WebService) -> APIRouter:
    routes = APIRouter(tags=["health"])

    @routes.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> JSONResponse:
        try:
            await service.store.next_wakeup()
        except StoreError:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    return routes
