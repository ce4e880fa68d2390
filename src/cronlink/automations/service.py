"""`Automations`: create and operate automations, poll their triggers, and the upkeep
`process-automations` does; the CLI, the jobs and Python callers share it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cronlink.automations import polling, slots
from cronlink.automations.cursors import iso, parse_instant
from cronlink.automations.polling import Poller
from cronlink.automations.steps import StepModel, label, parse_steps
from cronlink.clock import Clock, SystemClock
from cronlink.cron import CronExpr
from cronlink.cron import parse as parse_cron
from cronlink.cron.fires import next_fire
from cronlink.errors import (
    ConfigError,
    ConnectionNotFoundError,
    ConnectionUnusableError,
    CronSyntaxError,
    PollError,
)
from cronlink.jobs import new_run
from cronlink.records.automations import Automation, AutomationState, Cursor, EventState
from cronlink.records.runs import NewRun, Reason, Tier

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import aiohttp

    from cronlink.connections.providers import Providers
    from cronlink.connections.service import Connections
    from cronlink.jobs import Job
    from cronlink.records.automations import AutomationEvent, Work
    from cronlink.store import Store

MIN_INTERVAL = timedelta(seconds=10)
SWEEP_BATCH = 1000
FINISH_GRACE = 5.0
"""Seconds a batch started near the end of `poll_for`'s budget may run past it."""
IDLE_WAIT = 1.0


class Automations:
    def __init__(
        self,
        store: Store,
        providers: Providers,
        session: aiohttp.ClientSession,
        connections: Connections,
        *,
        process_job: Job | None = None,
        clock: Clock | None = None,
        batch: int = 500,
        poll_concurrency: int = 100,
        poll_lease: timedelta = timedelta(seconds=60),
        retention: timedelta = timedelta(days=30),
        stalled_after: timedelta = timedelta(hours=24),
        failing_after: timedelta = timedelta(minutes=15),
        models: Collection[str] | None = None,
        poll_schedule: str = "* * * * *",
    ) -> None:
        self.store = store
        self.poll_schedule = parse_cron(poll_schedule)
        """When poll-triggers runs start (UTC): each polls until the next one starts."""
        self.providers = providers
        self.connections = connections
        self.process_job = process_job
        """The heavy job each new event starts a run of (None: events wait for a sweep)."""
        self.clock = clock or SystemClock()
        self.wake: Callable[[Tier], None] = lambda tier: None
        """Called after runs were started for new events: wakes this process's workers
        (on PostgreSQL the commit also notifies every worker that listens)."""
        self.poller = Poller(
            store.automations, providers, session, connections.accounts, self.clock,
            event_run=self.event_run, batch=batch, concurrency=poll_concurrency, lease=poll_lease,
        )  # fmt: skip
        self.retention = retention
        self.stalled_after = stalled_after
        """How long an active trigger's watermark may stand still before it is stalled."""
        self.failing_after = failing_after
        """How long its polls may keep failing before it is stalled."""
        self.models = models
        """The chat models declared, which an `ai` step must name (None: checked when it runs)."""

    # -- lifecycle --------------------------------------------------------------------

    async def add(
        self,
        *,
        name: str,
        connection_id: int,
        steps: list[dict[str, Any]],
        trigger: str | None = None,
        every: timedelta = timedelta(minutes=1),
        schedule: str | None = None,
        params: dict[str, Any] | None = None,
        concurrency: int = 1,
        start: str = "now",
    ) -> Automation:
        """An automation polling `trigger` every `every`, or running on cron `schedule`.

        `start`: "now" (items already there never fire), "beginning" (they all do) or an
        ISO instant (a timestamp trigger fires items from then on).
        """
        if (trigger is None) == (schedule is None):
            raise ConfigError("give an automation either a trigger or a schedule, not both")
        if every < MIN_INTERVAL:
            raise ConfigError(f"every: {every} is too short; give at least 10s")
        if not 1 <= concurrency <= 100:
            raise ConfigError(f"concurrency must be 1-100, not {concurrency}")
        parsed = parse_steps(steps, self.models)
        connection = await self.connections.get(connection_id)
        await self._check_connections(parsed, connection_id)
        now = self.clock.now()
        cursor = Cursor(primed=True)
        if trigger is not None:
            kind = self.providers.get(connection.provider).trigger(trigger).cursor
            cursor = _start_cursor(start, kind, now)
            offset = slots.offset_for(name, every)
            next_at = slots.next_slot(now - every, every, offset)
        else:
            assert schedule is not None
            offset = timedelta(0)
            fires = next_fire(_schedule(schedule), now, UTC)
            if fires is None:
                raise ConfigError(f"schedule {schedule!r} never fires")
            next_at = fires
        values = {
            "name": name, "connection_id": connection_id, "trigger": trigger,
            "params": params or {}, "steps": steps,
            "schedule": schedule, "interval_s": int(every.total_seconds()),
            "offset_s": int(offset.total_seconds()), "concurrency": concurrency,
            "cursor": cursor, "next_poll_at": next_at,
        }  # fmt: skip
        return await self.store.automations.add(values, now)

    async def _check_connections(self, steps: list[StepModel], connection_id: int) -> None:
        """Refuse a step naming a connection that is not one of the owner's (the owner of
        `connection_id`, the automation's own), or that cannot be used now; each step is
        checked again when it runs."""
        for index, step in enumerate(steps):
            for key, ref in step.connections():
                try:
                    await self.connections.resolve(ref, connection_id)
                except (ConnectionNotFoundError, ConnectionUnusableError) as error:
                    raise ConfigError(f"{label(index, step.name)}.{key}: {error}") from None

    async def get(self, automation: int | str) -> Automation:
        return await self.store.automations.get(automation)

    async def find(self, *, after_id: int = 0, limit: int = 100) -> list[Automation]:
        return await self.store.automations.find(after_id=after_id, limit=limit)

    async def pause(self, automation: int | str) -> Automation:
        found = await self.get(automation)
        return await self.store.automations.set_state(
            found.id, AutomationState.PAUSED, self.clock.now()
        )

    async def resume(self, automation: int | str) -> Automation:
        """Poll again, from the cursor it had: items that arrived meanwhile fire."""
        found = await self.get(automation)
        return await self.store.automations.set_state(
            found.id, AutomationState.ACTIVE, self.clock.now()
        )

    async def delete(self, automation: int | str) -> None:
        """Delete an automation and the keys of the events it saw."""
        await self.store.automations.delete((await self.get(automation)).id)

    async def events(
        self,
        automation: int | str | None = None,
        state: EventState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[AutomationEvent]:
        found = None if automation is None else (await self.get(automation)).id
        return await self.store.automations.events(found, state, after_id, limit)

    async def replay(self, event_id: int) -> AutomationEvent:
        """Process an event again: a dead letter from the step that failed, a done one
        from the start."""
        event = await self.store.automations.replay(event_id, self.event_run(), self.clock.now())
        self.wake(Tier.HEAVY)
        return event

    # -- processing (`AutomationAccess`) ------------------------------------------------

    async def take(self, automation_id: int, run_id: int) -> Work | None:
        work = await self.store.automations.take_event(automation_id, run_id, self.clock.now())
        if work is None:
            return None
        base_url = self.providers.get(work.provider).url("base_url")
        return dataclasses.replace(work, base_url=base_url)

    async def save(
        self,
        event_id: int,
        run_id: int,
        state: str,
        step: int,
        outputs: dict[str, Any],
        error: str | None,
    ) -> bool:
        return await self.store.automations.save_progress(
            event_id, run_id, state=EventState(state), step=step, outputs=outputs, error=error,
            now=self.clock.now(),
        )  # fmt: skip

    async def pending(self, limit: int, run_id: int) -> list[int]:
        return await self.store.automations.pending_automations(limit, run_id)

    async def sweep(self) -> dict[str, int]:
        now = self.clock.now()
        counts = {"scheduled": 0, "restarted": 0, "dead_letter": 0}
        for automation in await self.store.automations.due_scheduled(now, SWEEP_BATCH):
            counts["scheduled"] += await self._fire_scheduled(automation, now)
        for event in await self.store.automations.orphaned(SWEEP_BATCH):
            done = await self.store.automations.settle_orphan(event, self.event_run(), now)
            if done:
                counts[done] += 1
        if counts["scheduled"] or counts["restarted"]:
            self.wake(Tier.HEAVY)
        counts["purged"] = await self.store.automations.purge(now - self.retention)
        counts["stalled"] = len(await self.check_polls(now))
        return counts

    async def _fire_scheduled(self, automation: Automation, now: datetime) -> int:
        """One event per due instant of a scheduled automation (its key is the instant, so
        a second sweep of the same instant adds nothing)."""
        assert automation.schedule is not None
        assert automation.next_poll_at is not None
        instant = automation.next_poll_at
        following = next_fire(_schedule(automation.schedule), max(instant, now), UTC)
        data = {"scheduled_for": instant.isoformat()}
        created = await self.store.automations.add_event(
            automation, f"schedule:{instant.isoformat()}", data, following, self.event_run(), now
        )
        return len(created)

    async def run_now(self, automation: int | str) -> AutomationEvent:
        """Process the automation once now, with an event of its own (`manual:INSTANT`)."""
        found = await self.get(automation)
        now = self.clock.now()
        key = f"manual:{now.isoformat()}"
        data = {"requested_at": now.isoformat()}
        [event_id] = await self.store.automations.add_event(
            found, key, data, found.next_poll_at, self.event_run(), now
        )
        self.wake(Tier.HEAVY)
        return await self.store.automations.event(event_id)

    def event_run(self) -> NewRun | None:
        """The run each new event starts, which the store completes with the event; None
        without the process-automation job: the store then refuses, with `ConfigError`, an
        event that needs a run, and records the others (baselines, keys already seen)."""
        if self.process_job is None:
            return None
        return new_run(self.process_job, Reason.ENQUEUE)

    # -- polling ----------------------------------------------------------------------

    async def poll_due(self, now: datetime | None = None) -> polling.Tally:
        """Poll every automation due at `now`, a batch at a time, until none is due."""
        tally = polling.Tally()
        while True:
            batch = await self._poll_batch(now or self.clock.now())
            tally.add(batch)
            if batch.polls + batch.failed < self.poller.batch:
                return tally

    def poll_window(self, now: datetime, longest: timedelta) -> timedelta:
        """How long a poll-triggers run starting at `now` polls: until the poll schedule
        fires again (runs tile the time, so no second of it goes unpolled), at most
        `longest`."""
        following = next_fire(self.poll_schedule, now)
        return longest if following is None else min(longest, following - now)

    async def poll_for(self, budget: timedelta, stop: asyncio.Event) -> polling.Tally:
        """Keep polling automations as they fall due, for `budget` or until `stop` (the
        poll-triggers run: with every automation at its own offset, some are due every
        second). Stopping between batches loses nothing: each batch commits on its own."""
        ends = self.clock.now() + budget
        tally = polling.Tally()
        while self.clock.now() < ends and not stop.is_set():
            left = (ends - self.clock.now()).total_seconds() + FINISH_GRACE
            batch = await self._poll_batch(self.clock.now(), min(polling.POLL_DEADLINE, left))
            tally.add(batch)
            if batch.polls + batch.failed < self.poller.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_WAIT)
        return tally

    async def _poll_batch(
        self, now: datetime, time_left: float = polling.POLL_DEADLINE
    ) -> polling.Tally:
        """One batch; wakes this process's heavy workers when it started runs."""
        batch = await self.poller.poll_batch(now, time_left)
        if batch.events:
            self.wake(Tier.HEAVY)
        return batch

    async def check_polls(self, now: datetime) -> list[Automation]:
        """Flag (and record an event on the connection for) each active trigger whose
        watermark has stood still for `stalled_after`, or whose polls have failed for
        `failing_after`: "active" with nothing coming in is how triggers die silently."""
        return await self.store.automations.mark_stalled(
            now - self.stalled_after, now - self.failing_after, now
        )


def _start_cursor(start: str, kind: str, now: datetime) -> Cursor:
    if start == "now":
        return Cursor(primed=False)
    if start == "beginning":
        return Cursor(primed=True)
    if kind != "timestamp":
        raise ConfigError(f"start: a {kind} trigger starts from 'now' or 'beginning'")
    try:
        moment = parse_instant(start, "start")
    except PollError:
        raise ConfigError(f"start: {start!r} is not 'now', 'beginning' or an ISO instant") from None
    return Cursor(watermark=iso(moment), primed=True, start=iso(moment))


def _schedule(text: str) -> CronExpr:
    try:
        return parse_cron(text)
    except CronSyntaxError as error:
        raise ConfigError(f"schedule: {error}") from None
