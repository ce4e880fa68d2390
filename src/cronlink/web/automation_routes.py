"""`/api/v1/automations`: see them and their events (read); pause, resume, run now and
replay an event (operate)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# the scope dependencies are local to `router`.

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Query, Request

from cronlink.automations.service import Automations
from cronlink.records.api_tokens import ApiToken, Scope
from cronlink.records.automations import Automation, AutomationEvent, EventState
from cronlink.web.api_auth import Refused, caller
from cronlink.web.api_models import MAX_ID, After, AutomationPage, EventPage, Id, Name

if TYPE_CHECKING:
    from cronlink.web.service import WebService

Page = Annotated[int, Query(ge=1, le=500)]


def router(service: "WebService") -> APIRouter:
    routes = APIRouter(prefix="/api/v1/automations", tags=["automations"])
    Reader = Annotated[ApiToken, Depends(caller(service, Scope.READ))]
    Operator = Annotated[ApiToken, Depends(caller(service, Scope.OPERATE))]

    def automations() -> Automations:
        if service.automations is None:
            raise Refused(503, "connections_not_configured")
        return service.automations

    async def audited(request: Request, token: ApiToken, action: str, target: object) -> None:
        await service.audited(request, token.actor, action, str(target), "accepted")

    @routes.get("")
    async def list_automations(
        token: Reader, after_id: After = 0, limit: Page = 100
    ) -> AutomationPage:
        found = await automations().find(after_id=after_id, limit=limit + 1)
        page = found[:limit]
        return AutomationPage(
            automations=page, next_after_id=page[-1].id if len(found) > limit else None
        )

    @routes.get("/{automation}")
    async def get_automation(automation: Name, token: Reader) -> Automation:
        """One automation, by id or name."""
        return await automations().get(_id(automation))

    @routes.get("/{automation}/events")
    async def automation_events(
        automation: Name,
        token: Reader,
        state: EventState | None = None,
        after_id: After = 0,
        limit: Page = 100,
    ) -> EventPage:
        found = await automations().events(_id(automation), state, after_id, limit + 1)
        page = found[:limit]
        return EventPage(events=page, next_after_id=page[-1].id if len(found) > limit else None)

    @routes.post("/{automation}/pause")
    async def pause_automation(automation: Name, token: Operator, request: Request) -> Automation:
        paused = await automations().pause(_id(automation))
        await audited(request, token, "automations.pause", paused.name)
        return paused

    @routes.post("/{automation}/resume")
    async def resume_automation(automation: Name, token: Operator, request: Request) -> Automation:
        resumed = await automations().resume(_id(automation))
        await audited(request, token, "automations.resume", resumed.name)
        return resumed

    @routes.post("/{automation}/run", status_code=202)
    async def run_automation(
        automation: Name, token: Operator, request: Request
    ) -> AutomationEvent:
        """Process the automation once now, with an event of its own."""
        event = await automations().run_now(_id(automation))
        await audited(request, token, "automations.run", automation)
        return event

    @routes.post("/events/{event_id}/replay", status_code=202)
    async def replay_event(event_id: Id, token: Operator, request: Request) -> AutomationEvent:
        """Process an event again: a dead letter from the step that failed."""
        event = await automations().replay(event_id)
        await audited(request, token, "automations.replay", f"event {event_id}")
        return event

    return routes


def _id(automation: str) -> int | str:
    """An id when it is all digits (and could be one), else a name."""
    if automation.isascii() and automation.isdigit() and int(automation) <= MAX_ID:
        return int(automation)
    return automation
