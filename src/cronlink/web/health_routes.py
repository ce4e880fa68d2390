"""`/healthz` (the process answers) and `/readyz` (the database answers and schedules
fire)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cronlink.clock import iso_seconds
from cronlink.engine.scheduler import HEARTBEAT
from cronlink.errors import StoreError
from cronlink.web.api_models import Health

if TYPE_CHECKING:
    from cronlink.web.service import WebService


FRESH = timedelta(minutes=2)
"""A scheduler beats every 10 s; an external cron calls `/cron/tick` every minute."""


def router(service: WebService) -> APIRouter:
    routes = APIRouter(tags=["health"])

    @routes.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @routes.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz() -> JSONResponse:
        """Ready when the database answers and a scheduler (or `POST /cron/tick`, for an
        external cron) has shown itself within the last two minutes: schedules fire."""
        try:
            last = await service.store.heartbeats.last(HEARTBEAT)
        except StoreError:
            body = {"status": "unavailable", "database": "unreachable", "scheduler": "unknown"}
            return JSONResponse(body, 503)
        if last is None or service.clock.now() - last > FRESH:
            scheduler = "never seen" if last is None else f"last seen {iso_seconds(last)}"
            body = {"status": "unavailable", "database": "ok", "scheduler": scheduler}
            return JSONResponse(body, 503)
        return JSONResponse({"status": "ready", "database": "ok", "scheduler": "ok"})

    return routes
