"""The health sweep: probe every active connection with bounded concurrency, judge each
result with damping (`health.judge`), record a page of outcomes per transaction.

A connection used successfully within the passive window (`Connections.used`) and already
healthy is not probed: real traffic is the better probe, and probes spend the provider's
rate limit that real work needs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from cronlink.connections import health
from cronlink.connections.account import Account, Gate
from cronlink.errors import (
    AccountPausedError,
    ConnectionUnusableError,
    CronlinkError,
    RefreshError,
    SecretKeyError,
    TokenUnavailableError,
)
from cronlink.records.connections import Health, HealthCheck

if TYPE_CHECKING:
    from datetime import datetime

    import aiohttp

    from cronlink.clock import Clock
    from cronlink.connections.providers import Providers
    from cronlink.records.connections import Connection, Credentials, Sealed
    from cronlink.store.connection_store import ConnectionStore

PAGE = 500


class Credentialed(Gate, Protocol):
    async def credentials(self, connection_id: int, sealed: Sealed | None = None) -> Credentials:
        """A token that has not expired; `sealed`, the connection as just read."""
        ...


class HealthChecker:
    """Probes connections through their accounts and records what it judged."""

    def __init__(
        self,
        store: ConnectionStore,
        providers: Providers,
        session: aiohttp.ClientSession,
        gate: Credentialed,
        clock: Clock,
        *,
        policy: health.Policy | None = None,
        passive_window: timedelta = timedelta(minutes=5),
        concurrency: int = 100,
    ) -> None:
        self.store = store
        self.providers = providers
        self.session = session
        self.gate = gate
        self.clock = clock
        self.policy = policy or health.Policy()
        self.passive_window = passive_window
        self.concurrency = concurrency

    async def check_all(self) -> dict[str, int]:
        """Check every active connection; returns how many were active, probed, skipped
        as used successfully within the passive window, skipped as paused by their
        provider, and changed health."""
        counts = {"active": 0, "probed": 0, "passive": 0, "paused": 0, "changed": 0}
        gate = asyncio.Semaphore(self.concurrency)
        after = 0
        while page := await self.store.active_sealed(after, PAGE):
            now = self.clock.now()
            due = [s for s in page if not self._vouched_for(s.connection, now)]
            outcomes = await asyncio.gather(*(self._gated(gate, s) for s in due))
            checks = [c for c in outcomes if c is not None]
            await self.store.record_health(checks, self.clock.now())
            counts["active"] += len(page)
            counts["probed"] += len(checks)
            counts["passive"] += len(page) - len(due)
            counts["paused"] += len(due) - len(checks)
            counts["changed"] += sum(c.event is not None for c in checks)
            after = page[-1].connection.id
        return counts

    def _vouched_for(self, connection: Connection, now: datetime) -> bool:
        """A healthy connection used successfully within the passive window needs no probe."""
        used = connection.used_at
        recent = used is not None and now - used < self.passive_window
        return recent and connection.health is Health.HEALTHY

    async def _gated(self, gate: asyncio.Semaphore, sealed: Sealed) -> HealthCheck | None:
        async with gate:
            try:
                return await self.check_one(sealed)
            except CronlinkError as error:
                # One connection's trouble (its provider file gone, a variable unset, deleted
                # meanwhile) must not stop the sweep: it is recorded as a failed probe.
                seen = health.Probe(ok=False, latency_ms=0, detail=str(error))
                return self._judged(sealed.connection, seen)

    async def check_one(self, sealed: Sealed) -> HealthCheck | None:
        """Probe one connection and judge the result; None when its account is paused (the
        provider asked for quiet: a probe now would be a request it refuses)."""
        current = sealed.connection
        provider = self.providers.get(current.provider)
        try:
            account = Account(self.gate, await self.gate.credentials(current.id, sealed))
            seen = await health.probe(self.session, provider, account)
        except AccountPausedError:
            return None
        except (RefreshError, TokenUnavailableError) as error:
            grant = isinstance(error, RefreshError) and error.kind == "grant"
            seen = health.Probe(ok=False, auth=grant, latency_ms=0, detail=str(error))
        except (ConnectionUnusableError, SecretKeyError) as error:
            seen = health.Probe(ok=False, auth=True, latency_ms=0, detail=str(error))
        return self._judged(current, seen)

    def _judged(self, current: Connection, seen: health.Probe) -> HealthCheck:
        judged = health.judge(
            current.health, current.health_failures, current.health_successes, seen, self.policy
        )
        changed = judged.health is not current.health
        return HealthCheck(
            connection_id=current.id,
            health=judged.health,
            failures=judged.failures,
            successes=judged.successes,
            latency_ms=seen.latency_ms,
            event=f"{current.health} -> {judged.health}: {seen.detail}" if changed else None,
        )
