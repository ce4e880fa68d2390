"""`poll-triggers`: poll every automation that is due, a batch at a time, with bounded
concurrency, and commit each batch's events, cursors and runs in one transaction.

A poll that fails keeps the cursor where it was and counts a failure (after the pages it
read, which are kept); a 429 pauses the connection's account (every job that calls it
waits, other accounts go on) and counts nothing, nor does a token that cannot be had
until its refresh succeeds; a poller that dies between fetch and commit leaves nothing
behind: its leases lapse and the same items are read again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from cronlink.automations import slots
from cronlink.automations.poller import Polled, Target, poll
from cronlink.errors import AccountPausedError, CronlinkError, PollError, TokenUnavailableError
from cronlink.observe import metrics, tracing
from cronlink.records.automations import PollRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    import aiohttp

    from cronlink.clock import Clock
    from cronlink.connections.account import Account
    from cronlink.connections.providers import Providers
    from cronlink.records.automations import Automation
    from cronlink.records.runs import NewRun
    from cronlink.store.automation_store import AutomationStore

    Accounts = Callable[[list[int]], Awaitable[dict[int, Account | CronlinkError]]]

log = logging.getLogger("cronlink.automations")
MIN_WAIT = timedelta(seconds=1)
POLL_DEADLINE = 30.0
"""Seconds a batch's polls may take before those still going fail."""


@dataclass(kw_only=True, slots=True)
class Tally:
    polls: int = 0
    failed: int = 0
    events: int = 0
    not_modified: int = 0
    paused: int = 0
    """Polls that waited for an account's pause or a token instead of asking."""
    lost: int = 0
    max_lag: float = 0.0
    """Seconds the most overdue automation polled waited past its slot."""

    def add(self, other: Tally) -> None:
        self.polls += other.polls
        self.failed += other.failed
        self.events += other.events
        self.not_modified += other.not_modified
        self.paused += other.paused
        self.lost += other.lost
        self.max_lag = max(self.max_lag, other.max_lag)


class Poller:
    """Polls the automations that are due, a batch at a time, and commits each batch."""

    def __init__(
        self,
        store: AutomationStore,
        providers: Providers,
        session: aiohttp.ClientSession,
        accounts: Accounts,
        clock: Clock,
        *,
        event_run: Callable[[], NewRun | None],
        batch: int = 500,
        concurrency: int = 100,
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self.store = store
        self.providers = providers
        self.session = session
        self.accounts = accounts
        """The accounts of several connections, read at once (`Connections.accounts`)."""
        self.clock = clock
        self.event_run = event_run
        """The run each new event starts (`Automations.event_run`)."""
        self.batch = batch
        self.concurrency = concurrency
        self.lease = lease

    async def poll_batch(self, now: datetime, time_left: float = POLL_DEADLINE) -> Tally:
        """Lease up to `batch` due automations and poll them within `time_left` seconds (a
        poll still going then fails, so the batch always commits); commit the outcome."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_left
        token = secrets.token_hex(8)
        taken = await self.store.take_due(now, self.batch, token, now + self.lease)
        tally = Tally()
        if not taken:
            return tally
        started = self.clock.now()
        tally.max_lag = max(
            (started - a.next_poll_at).total_seconds() for a, _ in taken if a.next_poll_at
        )
        gate = asyncio.Semaphore(self.concurrency)
        # One read for the credentials of the whole batch: on PostgreSQL a query each costs
        # more than the poll's request (bench/poll_bench.py --postgres).
        accounts = await self.accounts(sorted({a.connection_id for a, _ in taken}))

        async def one(automation: Automation, provider: str) -> Polled | CronlinkError:
            async with gate:
                try:
                    async with asyncio.timeout(max(0.1, deadline - loop.time())):
                        return await self._poll_one(
                            automation, provider, accounts[automation.connection_id]
                        )
                except TimeoutError:
                    return PollError(f"the poll did not finish within {time_left:g}s")
                except CronlinkError as error:
                    return error
                except Exception as error:
                    # An answer this code did not expect must cost one automation its poll,
                    # not every automation of the batch. The message may quote the provider:
                    # kept out.
                    log.warning(
                        "automation %s: poll failed: %s", automation.name, type(error).__name__
                    )
                    return PollError(f"unexpected {type(error).__name__} while polling")

        outcomes = await asyncio.gather(*(one(a, p) for a, p in taken))
        records: list[PollRecord] = []
        providers: list[str] = []
        for (automation, provider), outcome in zip(taken, outcomes, strict=True):
            if isinstance(outcome, CronlinkError):
                counted = await self._failed(automation, token, outcome, provider, now)
                metrics.POLLS.labels(provider, "failed" if counted else "paused").inc()
                tally.failed += counted
                tally.paused += not counted
                continue
            metrics.POLLS.labels(provider, "ok").inc()
            providers.append(provider)
            tally.polls += 1
            tally.not_modified += outcome.not_modified
            records.append(
                PollRecord(
                    automation=automation, token=token, items=outcome.items, cursor=outcome.cursor,
                    next_poll_at=self._next_poll(automation, provider, outcome, now),
                    fire=automation.cursor.primed, baseline=outcome.baseline,
                )
            )  # fmt: skip
        committed = await self.store.record_polls(records, now, self.event_run())
        for created, record, provider in zip(committed, records, providers, strict=True):
            if created is None:
                tally.lost += 1
            elif record.fire:
                tally.events += len(created)
                metrics.EVENTS.labels(provider).inc(len(created))
        return tally

    async def _poll_one(
        self,
        automation: Automation,
        provider_name: str,
        account: Account | CronlinkError,
    ) -> Polled:
        provider = self.providers.get(provider_name)
        assert automation.trigger is not None
        trigger = provider.trigger(automation.trigger)
        if isinstance(account, CronlinkError):
            raise account
        target = Target(
            base_url=provider.url("base_url"), account=account, params=automation.params
        )
        described = {"cronlink.automation": automation.name, "cronlink.provider": provider_name}
        with tracing.span("cronlink.poll", described):
            polled = await poll(self.session, trigger, target, automation.cursor)
        if polled.cursor.primed or polled.cursor.resume is not None:
            return polled
        # Priming (an automation that starts from "now") lasts until a poll reads to the end.
        return dataclasses.replace(polled, cursor=dataclasses.replace(polled.cursor, primed=True))

    async def _failed(
        self,
        automation: Automation,
        token: str,
        error: CronlinkError,
        provider: str,
        now: datetime,
    ) -> bool:
        """Keep the cursor and poll again later; True when it counts as a failure.

        A paused account (a 429, here or elsewhere) or a token that cannot be had yet is a
        pause: the poll waits for its end, and nothing else changes. A real failure backs off,
        doubling per failure in a row, up to the provider's `max_poll_backoff`."""
        if isinstance(error, AccountPausedError | TokenUnavailableError):
            until = error.until or now + automation.interval
            next_at, counted = max(until, now + MIN_WAIT), False
        else:
            next_at, counted = self._backed_off(automation, provider, now), True
        log.warning("automation %s: poll %s: %s", automation.name,
                    "failed" if counted else "waits", error)  # fmt: skip
        await self.store.record_poll_failure(
            automation, token=token, message=str(error)[:1000], next_poll_at=next_at,
            counted=counted, now=now,
        )  # fmt: skip
        return counted

    def _backed_off(self, automation: Automation, provider: str, now: datetime) -> datetime:
        cap = self.providers.get(provider).max_poll_backoff
        backoff = min(cap, automation.interval * 2 ** min(automation.poll_failures, 16))
        return slots.next_slot(now + backoff, automation.interval, automation.offset)

    def _next_poll(
        self, automation: Automation, provider: str, polled: Polled, now: datetime
    ) -> datetime:
        """Go on at once when a burst was cut at the page limit; after the pause or the
        backoff when a later page failed (the pages before it are kept); else the next slot."""
        stopped = polled.stopped
        if isinstance(stopped, AccountPausedError | TokenUnavailableError):
            return max(stopped.until or now + automation.interval, now + MIN_WAIT)
        if stopped is not None:
            return self._backed_off(automation, provider, now)
        if polled.cursor.resume is not None:
            return now
        return slots.next_slot(now, automation.interval, automation.offset)
