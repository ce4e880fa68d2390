"""`/api/v1/connections`: see them (read), refresh and check (operate), create, rename,
disable, enable and delete (admin). No answer ever holds a token: the store's `Connection`
has none."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# the scope dependencies are local to `router`.

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from cronlink.connections.service import Connections
from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.records.connections import Connection, ConnectionState, Event
from cronlink.web.api_auth import Refused, caller
from cronlink.web.api_models import After, ConnectionChange, ConnectionPage, Id, NewConnection

if TYPE_CHECKING:
    from cronlink.web.service import WebService


def router(service: "WebService") -> APIRouter:
    routes = APIRouter(prefix="/api/v1/connections", tags=["connections"])
    Reader = Annotated[ApiToken, Depends(caller(service, Scope.READ))]
    Operator = Annotated[ApiToken, Depends(caller(service, Scope.OPERATE))]
    Admin = Annotated[ApiToken, Depends(caller(service, Scope.ADMIN))]

    def connections() -> Connections:
        if service.connections is None:
            raise Refused(503, "connections_not_configured")
        return service.connections

    async def audited(request: Request, token: ApiToken, action: str, target: int) -> None:
        await service.audited(request, token.actor, action, str(target), "accepted")

    @routes.get("")
    async def list_connections(
        token: Reader,
        owner: Annotated[str | None, Query(max_length=400)] = None,
        provider: Annotated[str | None, Query(max_length=100)] = None,
        state: ConnectionState | None = None,
        after_id: After = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> ConnectionPage:
        """Connections by id, a page at a time (`after_id` = the last page's `next_after_id`)."""
        found = await connections().find(
            owner=owner, provider=provider, state=state, after_id=after_id, limit=limit + 1
        )
        page = found[:limit]
        return ConnectionPage(
            connections=page, next_after_id=page[-1].id if len(found) > limit else None
        )

    @routes.post("", status_code=201)
    async def create_connection(body: NewConnection, token: Admin, request: Request) -> Connection:
        added = await connections().add(**body.model_dump())
        await audited(request, token, "connections.create", added.id)
        return added

    @routes.get("/{connection_id}")
    async def get_connection(connection_id: Id, token: Reader) -> Connection:
        return await connections().get(connection_id)

    @routes.patch("/{connection_id}")
    async def change_connection(
        connection_id: Id, body: ConnectionChange, token: Admin, request: Request
    ) -> Connection:
        """Name or rename a connection (`{"name": null}` takes its name away)."""
        renamed = await connections().rename(connection_id, body.name)
        await audited(request, token, "connections.rename", connection_id)
        return renamed

    @routes.get("/{connection_id}/events")
    async def connection_events(
        connection_id: Id, token: Reader, after_id: After = 0
    ) -> list[Event]:
        await connections().get(connection_id)
        return await connections().events(connection_id, after_id)

    @routes.post("/{connection_id}/refresh")
    async def refresh_connection(
        connection_id: Id, token: Operator, request: Request
    ) -> Connection:
        """Refresh the access token now (502 with the provider's answer if it refuses)."""
        refreshed = await connections().refresh(connection_id)
        await audited(request, token, "connections.refresh", connection_id)
        return refreshed

    @routes.post("/{connection_id}/check")
    async def check_connection(connection_id: Id, token: Operator, request: Request) -> Connection:
        checked = await connections().check(connection_id)
        await audited(request, token, "connections.check", connection_id)
        return checked

    @routes.post("/{connection_id}/disable")
    async def disable_connection(connection_id: Id, token: Admin, request: Request) -> Connection:
        disabled = await connections().disable(connection_id)
        await audited(request, token, "connections.disable", connection_id)
        return disabled

    @routes.post("/{connection_id}/enable")
    async def enable_connection(connection_id: Id, token: Admin, request: Request) -> Connection:
        enabled = await connections().enable(connection_id)
        await audited(request, token, "connections.enable", connection_id)
        return enabled

    @routes.delete("/{connection_id}", status_code=204)
    async def delete_connection(connection_id: Id, token: Admin, request: Request) -> Response:
        await connections().delete(connection_id)
        await audited(request, token, "connections.delete", connection_id)
        return Response(status_code=204)

    return routes
