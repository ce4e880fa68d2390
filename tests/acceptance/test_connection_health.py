"""Health checks against the sandbox provider: damping, 429, a refused token, passive use."""

from __future__ import annotations

import pytest

from cronlink.errors import RefreshError
from cronlink.records.connections import ConnectionState, Health
from tests.acceptance.sandbox_kit import Kit, kit

__all__ = ["kit"]


async def test_a_working_connection_is_healthy_with_its_latency(kit: Kit) -> None:
    cid = await kit.connect()
    after = await kit.connections.check(cid)
    assert after.health is Health.HEALTHY
    assert after.latency_ms is not None
    assert after.checked_at is not None
    events = [e for e in await kit.connections.events(cid) if e.kind == "health"]
    assert [e.detail for e in events] == ["unknown -> healthy: HTTP 200"]


async def test_provider_down_degrades_then_downs_then_recovers(kit: Kit) -> None:
    cid = await kit.connect()
    await kit.connections.check(cid)
    kit.sandbox.configure(api_status=503)
    seen = [(await kit.connections.check(cid)).health for _ in range(4)]
    assert seen == [Health.DEGRADED, Health.DEGRADED, Health.DOWN, Health.DOWN]
    kit.sandbox.configure(api_status=None)
    seen = [(await kit.connections.check(cid)).health for _ in range(2)]
    assert seen == [Health.DOWN, Health.HEALTHY]
    details = [e.detail for e in await kit.connections.events(cid) if e.kind == "health"]
    assert details == [
        "unknown -> healthy: HTTP 200",
        "healthy -> degraded: HTTP 503",
        "degraded -> down: HTTP 503",
        "down -> healthy: HTTP 200",
    ]


async def test_throttled_is_reachable(kit: Kit) -> None:
    cid = await kit.connect()
    kit.sandbox.configure(api_status=429)
    assert (await kit.connections.check(cid)).health is Health.HEALTHY


async def test_a_refused_token_is_refreshed_once_before_it_counts(kit: Kit) -> None:
    cid = await kit.connect()
    kit.sandbox.grants.access.clear()  # the provider forgot the access token
    after = await kit.connections.check(cid)
    assert after.health is Health.HEALTHY
    assert after.version == 2
    kit.sandbox.grants.revoke_all()
    after = await kit.connections.check(cid)
    assert after.health is Health.AUTH_FAILED


async def test_the_sweep_skips_connections_used_just_now(kit: Kit) -> None:
    ids = [await kit.connect(f"user{i}") for i in range(6)]
    counts = await kit.connections.check_all()
    assert counts == {"active": 6, "probed": 6, "passive": 0, "paused": 0, "changed": 6}
    await kit.connections.used(ids[0])
    await kit.connections.pauses.pause(ids[1], 60)  # its provider asked for quiet
    await kit.connections.disable(ids[2])
    probes = (await kit.stats())["probes"]
    counts = await kit.connections.check_all()
    assert counts == {"active": 5, "probed": 3, "passive": 1, "paused": 1, "changed": 0}
    assert (await kit.stats())["probes"] == probes + 3


async def test_a_provider_down_for_hours_never_disconnects_anyone(kit: Kit) -> None:
    cid = await kit.connect()
    await kit.connections.check(cid)
    kit.sandbox.configure(token_status=503, api_status=503)
    waits = []
    for _ in range(7):
        with pytest.raises(RefreshError):
            await kit.connections.refresh(cid)
        after = await kit.connections.get(cid)
        assert after.refresh_due_at is not None
        waits.append((after.refresh_due_at - after.updated_at).total_seconds())
        assert after.state is ConnectionState.ACTIVE
    assert all(1 <= wait <= 2 for wait in waits[:4])  # four prompt retries, then backoff
    for wait, base in zip(waits[4:], [5, 10, 20], strict=True):  # spread
        assert base <= wait <= base * 1.1
    healths = [(await kit.connections.check(cid)).health for _ in range(3)]
    assert healths == [Health.DEGRADED, Health.DEGRADED, Health.DOWN]
    kit.sandbox.configure(token_status=None, api_status=None)
    after = await kit.connections.refresh(cid)
    assert (after.state, after.refresh_failures) == (ConnectionState.ACTIVE, 0)
    healths = [(await kit.connections.check(cid)).health for _ in range(2)]
    assert healths == [Health.DOWN, Health.HEALTHY]
