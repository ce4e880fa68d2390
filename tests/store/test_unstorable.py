"""Text and JSON no engine can keep and give back unchanged (a NUL character, a lone
surrogate, a number that is not finite) are refused by the store itself, on both engines
alike, with `UnstorableError`; the refused write leaves nothing behind, and the next write
on the same connection (an audit line, a run) goes through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cronlink.errors import UnstorableError
from cronlink.records.audit import AuditEntry
from cronlink.records.connections import ConnectionState
from cronlink.records.runs import NewRun, Reason, RunState, Tier
from cronlink.storable import escaped
from cronlink.store import RunFilter, Store
from tests.store.test_automation_store import NOW, _automation

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BAD_TEXT = ["x\x00y", "x\ud800y", "\udfff"]
BAD_JSON: list[Any] = [
    "a\x00b", {"k": "\ud83d"}, {"a\x00": 1}, [float("nan")], {"n": float("inf")}, 10**30,
]  # fmt: skip


def _line(target: str) -> AuditEntry:
    return AuditEntry(at=T0, actor="anonymous", action="cron.run", target=target,
                      client="127.0.0.1", outcome="denied")  # fmt: skip


@pytest.mark.parametrize("bad", BAD_TEXT)
async def test_unstorable_text_is_refused_and_the_next_audit_line_is_kept(
    store: Store, bad: str
) -> None:
    for _ in range(2):  # on the same pooled connection, twice over
        with pytest.raises(UnstorableError, match=r"holds a (NUL character|lone surrogate)"):
            await store.audit.append(_line(bad))
        await store.audit.append(_line("ok"))
    assert [e.target for e in await store.audit.find()] == ["ok", "ok"]


@pytest.mark.parametrize("bad", BAD_TEXT)
async def test_a_run_with_unstorable_text_is_refused_on_the_hot_path(
    store: Store, bad: str
) -> None:
    with pytest.raises(UnstorableError):
        await store.enqueue(NewRun(job=bad, tier=Tier.LIGHT, reason=Reason.API), T0)
    await store.enqueue(NewRun(job="ok", tier=Tier.LIGHT, reason=Reason.API), T0)
    assert [r.job for r in await store.list_runs(RunFilter(limit=10))] == ["ok"]


@pytest.mark.parametrize("bad", BAD_JSON)
async def test_a_payload_that_would_not_come_back_as_it_went_in_is_refused(
    store: Store, bad: Any
) -> None:
    with pytest.raises(UnstorableError, match="cannot store JSON"):
        await store.enqueue(NewRun(job="j", tier=Tier.LIGHT, reason=Reason.API, payload=bad), T0)
    fine = {"text": "é \u2028 \U0001f600", "big": 2**63 - 1, "small": -(2**63), "x": 1.5e300}
    run_id = await store.enqueue(
        NewRun(job="j", tier=Tier.LIGHT, reason=Reason.API, payload=fine), T0
    )
    [run] = await store.list_runs(RunFilter(limit=10))
    assert (run.id, run.state, run.payload) == (run_id, RunState.QUEUED, fine)


async def test_a_provider_s_words_in_a_failure_are_kept_escaped(store: Store) -> None:
    # What a provider answers ends up in the failure a poll or a refresh records; such a
    # record that could not be written would fail again on every retry, and the
    # automation or connection would never move on.
    said = "upstream said: x\x00y \ud800"
    automation = await _automation(store)
    [(taken, _)] = await store.automations.take_due(NOW, 10, "t", NOW + timedelta(minutes=1))
    await store.automations.record_poll_failure(
        taken, token="t", message=said, next_poll_at=NOW, counted=True, now=NOW
    )
    assert (await store.automations.get(automation.id)).last_error == escaped(said)
    cid = automation.connection_id
    await store.connections.take_refresh_lock(cid, "r", NOW + timedelta(minutes=1), NOW)
    await store.connections.record_refresh_failure(
        cid, token="r", message=said, state=ConnectionState.ACTIVE, kind="refresh_failed",
        retry_at=NOW, now=NOW, follow_up=None,
    )  # fmt: skip
    assert (await store.connections.get(cid)).last_error == escaped(said)
