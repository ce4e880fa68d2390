"""The route table of `cronlink serve`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from cronlink.web import (
    audit_routes,
    automation_routes,
    connect_routes,
    connection_routes,
    cron_routes,
    dashboard_routes,
    health_routes,
    job_routes,
    metrics_routes,
    problems,
)
from cronlink.web.edge import Edge

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def build(service: WebService) -> FastAPI:
    api = FastAPI(title="cronlink", version="1", docs_url=None, redoc_url=None)
    api.include_router(health_routes.router(service))
    api.include_router(metrics_routes.router(service))
    api.include_router(cron_routes.router(service))
    api.include_router(connect_routes.router(service))
    api.include_router(job_routes.router(service), responses=problems.RESPONSES)
    api.include_router(audit_routes.router(service), responses=problems.RESPONSES)
    api.include_router(connection_routes.router(service), responses=problems.RESPONSES)
    api.include_router(automation_routes.router(service), responses=problems.RESPONSES)
    dashboard_routes.install(api, service)
    problems.install(api)
    problems.publish(api)
    api.add_middleware(Edge, service=service)
    return api
