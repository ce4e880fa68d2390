"""What the demo prints: one line per thing that happened, in order, in aligned columns
(time, what it happened to, what happened, the detail), read from the database as the
dashboard reads it: connection events, finished automation events and the model's spend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cronlink.demo.seed import MODEL
from cronlink.plurals import counted
from cronlink.records.ai_calls import month_of
from cronlink.records.automations import EventState

if TYPE_CHECKING:
    from collections.abc import Callable

    from cronlink.automations.service import Automations
    from cronlink.connections.service import Connections
    from cronlink.records.automations import AutomationEvent
    from cronlink.store import Store

SUBJECT, WHAT = 14, 13
"""The widths of the columns after the time."""
FINISHED = (EventState.DONE, EventState.DEAD_LETTER)
HOLD = 2.0
"""Seconds a line waits before it is said: what another process wrote a little late for
its time still comes before it."""


def line(at: datetime, subject: str, what: str, detail: str) -> str:
    """One line: the local time, what it happened to, what happened, the detail."""
    return f"{at.astimezone():%H:%M:%S}  {subject:<{SUBJECT}} {what:<{WHAT}} {detail}".rstrip()


class Narrator:
    """Says each new connection event and each finished automation event once, merged in
    the order they happened; after a report, and at the end, what the model has cost."""

    def __init__(
        self,
        connections: Connections,
        automations: Automations,
        store: Store,
        say: Callable[[str], None],
    ) -> None:
        self.connections = connections
        self.automations = automations
        self.store = store
        self.say = say
        self._connection_seen = 0
        self._event_seen = 0
        self._held: list[tuple[datetime, str]] = []

    async def skip_earlier(self) -> None:
        """Start after what an earlier demo left in the database."""
        while backlog := await self.connections.events(after_id=self._connection_seen):
            self._connection_seen = backlog[-1].id

    async def run(self, every: float = 1.0) -> None:
        """Say what happened since the last look, every `every` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every)
            await self.look()

    async def finish(self) -> None:
        """Say all that is left, then what the models cost: the last lines."""
        await self.look(hold=0)
        self.say(await self.spend())

    async def look(self, *, hold: float = HOLD) -> None:
        """Say what happened up to `hold` seconds ago, oldest first; keep the rest back for
        a look to come, so that what was written late still comes in its place."""
        for change in await self.connections.events(after_id=self._connection_seen):
            self._connection_seen = change.id
            subject = f"connection {change.connection_id}"
            self._held.append((change.at, line(change.at, subject, change.kind, change.detail)))
        for event in await self.automations.events(after_id=self._event_seen, limit=1000):
            if event.state not in FINISHED:
                break  # the ones after it wait, so that each is said once, in order
            self._event_seen = event.id
            at = event.finished_at or event.seen_at
            self._held.append((at, _outcome(at, event)))
            if "report" in event.outputs:  # what the models cost so far, right after it
                self._held.append((at, await self.spend(at)))
        until = datetime.now(UTC) - timedelta(seconds=hold)
        self._held.sort(key=lambda pair: pair[0])
        ready = [said for at, said in self._held if at <= until]
        self._held = self._held[len(ready) :]
        for said in ready:
            self.say(said)

    async def spend(self, at: datetime | None = None) -> str:
        """What the chat models cost this month, as `cronlink usage` reads it (the line
        dated `at`, or now)."""
        now = at or datetime.now(UTC)
        spent = await self.store.ai.month(month_of(now))
        if not spent:
            return line(now, "AI spend", "this month", "no model called yet")
        each = "; ".join(
            f"model {s.model}: {counted(s.calls, 'call')} ({s.failed} failed), "
            f"{s.input_tokens:,} tokens in, {s.output_tokens:,} out, ${s.cost_usd:.4f}"
            for s in spent
        )
        return line(now, "AI spend", "this month", each)


def _outcome(at: datetime, event: AutomationEvent) -> str:
    """What an event of the demo's automations came to, in a line."""
    outputs = event.outputs
    if event.state is EventState.DEAD_LETTER:
        return line(at, f"event {event.id}", "dead letter", str(event.error))
    if "copy" in outputs:
        copied = outputs["copy"]
        detail = f"{copied['copied']:,} records to the CRM in {counted(copied['pages'], 'page')}"
        return line(at, "nightly sync", "copied", detail)
    if "report" in outputs:
        report, emails = outputs["report"], len(outputs["collect"]["emails"])
        detail = (
            f"{counted(emails, 'email')} summarised by model {MODEL}: {report['bytes']:,} "
            f"bytes of Markdown to {', '.join(report['delivered'])}"
        )
        return line(at, "daily report", "delivered", detail)
    answer = outputs.get("classify", {})
    detail = f"{answer.get('label', '?'):<10} {answer.get('summary', '')} (posted to the webhook)"
    return line(at, f"email {event.key}", "classified", detail)
