"""The health sweep: probe every active connection with bounded concurrency, judge each
result with damping (`health.judge`), record a page of outcomes per transaction.

A connection used successfully within the passive window (`Connections.used`) and already
healthy is not probed: real traffic is the better probe, and probes spend the provider's
rate limit that real work needs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cronlink.connections import health
from cronlink.connections.account import Account
from cronlink.connections.model import Health, HealthCheck
from cronlink.errors import (
    AccountPausedError,
    ConnectionUnusableError,
    CronlinkError,
    RefreshError,
    SecretKeyError,
    TokenUnavailableError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from cronlink.connections.model import Connection, Sealed
    from cronlink.connections.service import Connections

PAGE = 500


async def check_all(connections: Connections) -> dict[str, int]:
    """Check every active connection; returns how many were probed, skipped, changed."""
    counts = {"probed": 0, "passive": 0, "changed": 0}
    gate = asyncio.Semaphore(connections.probe_concurrency)
    after = 0
    while page := await connections.store.connections.active_sealed(after, PAGE):
        now = connections.clock.now()
        outcomes = await asyncio.gather(*(_gated(gate, connections, s, now) for s in page))
        checks = [c for c in outcomes if c is not None]
        await connections.store.connections.record_health(checks, connections.clock.now())
        counts["probed"] += len(checks)
        counts["passive"] += len(page) - len(checks)
        counts["changed"] += sum(c.event is not None for c in checks)
        after = page[-1].connection.id
    return counts


async def _gated(
    gate: asyncio.Semaphore, connections: Connections, sealed: Sealed, now: datetime
) -> HealthCheck | None:
    current = sealed.connection
    recent = current.used_at is not None and now - current.used_at < connections.passive_window
    if recent and current.health is Health.HEALTHY:
        return None
    async with gate:
        try:
            return await check_one(connections, sealed)
        except CronlinkError as error:
            # One connection's trouble (its provider file gone, a variable unset, deleted
            # meanwhile) must not stop the sweep: it is recorded as a failed probe.
            seen = health.Probe(ok=False, latency_ms=0, detail=str(error))
            return _judged(connections, current, seen)


async def check_one(connections: Connections, sealed: Sealed) -> HealthCheck | None:
    """Probe one connection and judge the result; None when its account is paused (the
    provider asked for quiet: a probe now would be a request it refuses)."""
    current = sealed.connection
    provider = connections.providers.get(current.provider)
    try:
        account = Account(connections, await connections.credentials(current.id, sealed))
        seen = await health.probe(connections.session, provider, account)
    except AccountPausedError:
        return None
    except (RefreshError, TokenUnavailableError) as error:
        grant = isinstance(error, RefreshError) and error.kind == "grant"
        seen = health.Probe(ok=False, auth=grant, latency_ms=0, detail=str(error))
    except (ConnectionUnusableError, SecretKeyError) as error:
        seen = health.Probe(ok=False, auth=True, latency_ms=0, detail=str(error))
    return _judged(connections, current, seen)


def _judged(connections: Connections, current: Connection, seen: health.Probe) -> HealthCheck:
    judged = health.judge(
        current.health, current.health_failures, current.health_successes, seen,
        connections.health_policy,
    )  # fmt: skip
    changed = judged.health is not current.health
    return HealthCheck(
        connection_id=current.id,
        health=judged.health,
        failures=judged.failures,
        successes=judged.successes,
        latency_ms=seen.latency_ms,
        event=f"{current.health} -> {judged.health}: {seen.detail}" if changed else None,
    )
