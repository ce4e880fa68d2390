"""The provider-facing counters of `/metrics` against the real sandbox: refreshes by
result, polls by result and the events they found, counted where they happen."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from cronlink.errors import RefreshError
from tests.acceptance.automation_kit import STEPS, AutoKit, auto
from tests.acceptance.sandbox_kit import Kit, kit

__all__ = ["auto", "kit"]


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_refreshes_are_counted_by_result(kit: Kit) -> None:
    refreshed = counted("cronlink_refreshes_total", provider="sandbox", result="refreshed")
    refused = counted("cronlink_refreshes_total", provider="sandbox", result="grant")
    cid = await kit.connect()
    await kit.connections.refresh(cid)
    await kit.connections.refresh(cid)
    kit.sandbox.grants.revoke_all()
    with pytest.raises(RefreshError):
        await kit.connections.refresh(cid)
    assert counted("cronlink_refreshes_total", provider="sandbox", result="refreshed") == (
        refreshed + 2
    )
    assert counted("cronlink_refreshes_total", provider="sandbox", result="grant") == refused + 1


async def test_polls_and_events_are_counted_by_provider(auto: AutoKit) -> None:
    polls = counted("cronlink_polls_total", provider="sandbox", result="ok")
    failed = counted("cronlink_polls_total", provider="sandbox", result="failed")
    events = counted("cronlink_events_total", provider="sandbox")
    cid = await auto.kit.connect()
    await auto.automations.add(
        name="mail", connection_id=cid, trigger="new_email", steps=STEPS, start="beginning"
    )
    await auto.feed(count=3)
    await auto.poll()
    assert counted("cronlink_polls_total", provider="sandbox", result="ok") == polls + 1
    assert counted("cronlink_events_total", provider="sandbox") == events + 3
    auto.kit.sandbox.grants.revoke_all()
    await auto.expire()
    await auto.poll()
    assert counted("cronlink_polls_total", provider="sandbox", result="failed") == failed + 1
