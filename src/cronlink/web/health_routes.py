"""`/healthz` (the process answers) and `/readyz` (the database answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cronlink.errors import StoreError

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def router(service: WebService) -> APIRouter:
    routes = APIRouter()

    @routes.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get("/readyz")
    async def readyz() -> JSONResponse:
        try:
            await service.store.next_wakeup()
        except StoreError:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ready", "database": "ok"})

    return routes
