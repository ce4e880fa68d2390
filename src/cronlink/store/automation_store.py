"""The automation domain's verbs, on either engine (`store.automations`): their SQL is
shared (`automation_queries`), written once over `Store.transact`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from cronlink.store import automation_queries as q
from cronlink.store import event_queries as eq

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.automations.model import (
        Automation,
        AutomationEvent,
        AutomationState,
        EventState,
        PollRecord,
        Work,
    )
    from cronlink.records import NewRun
    from cronlink.store.base import Store


class AutomationStore:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def add(self, values: dict[str, Any], now: datetime) -> Automation:
        return await self._store.transact(lambda c: q.insert_automation(c, values, now), write=True)

    async def get(self, automation: int | str) -> Automation:
        """By id, or by name when given a string."""
        return await self._store.transact(lambda c: q.get_automation(c, automation), write=False)

    async def find(
        self, *, connection_id: int | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Automation]:
        return await self._store.transact(
            lambda c: q.list_automations(c, connection_id, after_id, limit), write=False
        )

    async def set_state(
        self, automation_id: int, state: AutomationState, now: datetime
    ) -> Automation:
        return await self._store.transact(
            lambda c: q.set_state(c, automation_id, state, now), write=True
        )

    async def delete(self, automation_id: int) -> None:
        await self._store.transact(lambda c: q.delete_automation(c, automation_id), write=True)

    async def take_due(
        self, now: datetime, limit: int, token: str, until: datetime
    ) -> list[tuple[Automation, str]]:
        """Lease due automations for one poll each; with each one's provider."""
        return await self._store.transact(
            lambda c: q.take_due(c, now, limit, token, until), write=True
        )

    async def record_polls(
        self, polls: list[PollRecord], now: datetime, run_for: Callable[[int, int], NewRun]
    ) -> list[list[int] | None]:
        """Commit several polls in one transaction: per poll, the ids of its new events
        (each with its run started), or None where the lease was lost."""

        return await self._store.transact(
            lambda c: q.record_polls(c, polls, now, run_for), write=True
        )

    async def record_poll_failure(
        self,
        automation: Automation,
        *,
        token: str,
        message: str,
        next_poll_at: datetime,
        counted: bool,
        now: datetime,
    ) -> None:
        """Keep the cursor, release the lease, poll again at `next_poll_at`; a poll that
        only waited out a pause (not `counted`) leaves the failure count as it was."""
        await self._store.transact(
            lambda c: q.record_poll_failure(
                c, automation.id, token=token, message=message, next_poll_at=next_poll_at,
                counted=counted, now=now,
            ),
            write=True,
        )  # fmt: skip

    async def mark_stalled(
        self, before: datetime, failing_since: datetime, now: datetime
    ) -> list[Automation]:
        return await self._store.transact(
            lambda c: q.mark_stalled(c, before, failing_since, now), write=True
        )

    async def event(self, event_id: int) -> AutomationEvent:
        return await self._store.transact(lambda c: eq.get_event(c, event_id), write=False)

    async def events(
        self,
        automation_id: int | None = None,
        state: EventState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[AutomationEvent]:
        return await self._store.transact(
            lambda c: eq.list_events(c, automation_id, state, after_id, limit), write=False
        )

    async def take_event(self, automation_id: int, run_id: int, now: datetime) -> Work | None:
        return await self._store.transact(
            lambda c: eq.take_event(c, automation_id, run_id, now), write=True
        )

    async def save_progress(
        self,
        event_id: int,
        run_id: int,
        *,
        state: EventState,
        step: int,
        outputs: dict[str, Any],
        error: str | None,
        now: datetime,
    ) -> bool:
        return await self._store.transact(
            lambda c: eq.save_progress(
                c,
                event_id,
                run_id,
                state=state,
                step=step,
                outputs=outputs,
                error=error,
                now=now,
            ),
            write=True,
        )

    async def replay(
        self, event_id: int, run_for: Callable[[int, int], NewRun], now: datetime
    ) -> AutomationEvent:
        return await self._store.transact(
            lambda c: eq.replay(c, event_id, run_for, now), write=True
        )

    async def orphaned(self, limit: int) -> list[AutomationEvent]:
        return await self._store.transact(lambda c: eq.orphaned(c, limit), write=False)

    async def pending_automations(self, limit: int, run_id: int = 0) -> list[int]:
        """Automations with pending events (or events `run_id` holds), oldest first."""
        return await self._store.transact(
            lambda c: eq.pending_automations(c, limit, run_id), write=False
        )

    async def settle_orphan(
        self, event: AutomationEvent, run_for: Callable[[int, int], NewRun], now: datetime
    ) -> str:
        return await self._store.transact(
            lambda c: eq.settle_orphan(c, event, run_for, now), write=True
        )

    async def purge(self, before: datetime) -> int:
        return await self._store.transact(lambda c: eq.purge(c, before), write=True)

    async def due_scheduled(self, now: datetime, limit: int) -> list[Automation]:
        return await self._store.transact(lambda c: q.due_scheduled(c, now, limit), write=False)

    async def add_event(
        self,
        automation: Automation,
        key: str,
        data: Any,
        next_at: datetime | None,
        run_for: Callable[[int, int], NewRun],
        now: datetime,
    ) -> list[int]:
        """A scheduled automation's event for one instant (once per key), its run, and
        the next instant, in one transaction."""

        def work(c: Any) -> list[int]:
            q.set_next_poll(c, automation.id, next_at)
            return q.insert_events(c, automation.id, [(key, data)], run_for, now)

        return await self._store.transact(work, write=True)
