"""Four connections x three trigger kinds against a provider as hostile as real ones, all at
once: 429s with Retry-After on the token endpoint, the probe and every feed, 20 s access
tokens, rotating refresh tokens with reuse detection and a 10 s grace window, lost token
answers, 35 s hangs, garbled answers and expired cursors; while a scheduler and the light
and heavy workers are SIGKILLed every 10-20 s and restarted.

It holds when every event reaches the ledger exactly once and is processed within 60 s of
the provider's last item, no request of a paused account left cronlink, no grant was lost,
and every refresh run refreshed or left its successor queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cronlink.automations.service import Automations
from cronlink.records.automations import EventState
from cronlink.records.connections import ConnectionState
from cronlink.records.runs import RunState
from cronlink.store import RunFilter, Store
from tests.acceptance.automation_kit import BUILTIN
from tests.faults.processes import Role, Roles
from tests.faults.sandboxed import Setup, sandboxed

# The tests whose deadlines are tightest run one after the other on one pytest process,
# never beside each other: each spawns roles that keep both cores busy.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("busiest")]
OWNERS = ("ana", "ben", "chen", "dana")
TRIGGERS = ("new_email", "new_item", "change")
EMITTING = 40.0
"""Seconds the provider emits new items for."""
DELIVERY = 60.0
"""Every item is processed within this long after the last one was emitted."""
HOSTILE = {
    "token_lifetime": 20, "rotation": True, "grace_seconds": 10,
    "throttle_rate": 0.04, "retry_after": 3, "lose_token_rate": 0.15,
    "hang_rate": 0.01, "hang_seconds": 35, "hang_token": False, "malformed_rate": 0.03,
}  # fmt: skip
"""Hangs spare the token endpoint: one processed after the client gave up and retried
rotates the grant behind that retry, and reuse detection then revokes it (see
`Switches.hang_token`); lost answers cover what a client can survive there."""
TOML = """
refresh_lease = "4s"
health_schedule = "*/10 * * * * *"
[worker]
lease = "2s"
heartbeat = "400ms"
poll = "100ms"
[automations]
poll_schedule = "*/5 * * * * *"
process_schedule = "*/10 * * * * *"
poll_lease = "10s"
"""


async def _emit(setup: Setup, rng: random.Random, seconds: float) -> list[dict[str, Any]]:
    """Items at an uneven pace with one burst longer than a poll reads, and stale cursors
    now and then."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    emitted: list[dict[str, Any]] = []
    burst_at = loop.time() + seconds / 3
    while loop.time() < ends:
        count = 30 if burst_at and loop.time() >= burst_at else rng.randint(0, 3)
        if count == 30:
            burst_at = 0
        emitted += setup.sandbox.feed.add({"count": count}) if count else []
        if rng.random() < 0.08:
            setup.sandbox.feed.generation += 1  # every delta and page token is stale now
        await asyncio.sleep(rng.uniform(0.5, 2.0))
    return emitted


async def _lose_one_answer(setup: Setup) -> None:
    """Make sure at least one token answer is lost, whatever the draws."""
    setup.sandbox.configure(lose_token_rate=1)
    async with asyncio.timeout(30):
        while setup.sandbox.grants.stats.lost_answers == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    setup.sandbox.configure(lose_token_rate=HOSTILE["lose_token_rate"])


async def _chaos(roles: list[Role], rng: random.Random, stop: asyncio.Event) -> list[str]:
    """SIGKILL a random role every 10-20 s and start it again, until `stop`; then give the
    last one restarted time to install its signal handlers (a SIGTERM before that would
    say nothing of a graceful stop)."""
    killed: list[str] = []
    loop = asyncio.get_running_loop()
    restarted = loop.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(10, 20))
        if stop.is_set():
            break
        victim = rng.choice(roles)
        assert victim.alive(), f"{victim.args} exited by itself:\n{victim.output()[-3000:]}"
        victim.kill()
        killed.append(victim.args[-1])
        victim.start()
        restarted = loop.time()
    await asyncio.sleep(max(0.0, restarted + 5 - loop.time()))
    return killed


async def _undelivered(automations: Automations, ids: list[int], keys: set[str]) -> int:
    left = 0
    for automation_id in ids:
        events = await automations.events(automation_id, limit=10_000)
        done = {e.key for e in events if e.state is EventState.DONE}
        left += len(keys - done)
    return left


async def _behind(automations: Automations, ids: list[int], keys: set[str]) -> str:
    """What each automation still lacks, and why: for the failure's message."""
    lines = []
    for automation_id in ids:
        found = await automations.get(automation_id)
        events = await automations.events(automation_id, limit=10_000)
        states: dict[str, int] = {}
        for event in events:
            states[event.state] = states.get(event.state, 0) + 1
        lines.append(
            f"{found.name}: unseen {len(keys - {e.key for e in events})} {states} "
            f"failures {found.poll_failures} next {found.next_poll_at} error {found.last_error} "
            f"cursor {found.cursor} "
            f"connection {await automations.connections.get(found.connection_id)}"
        )
    store = automations.store
    for job in ("process-automation", "process-automations"):
        runs = await store.list_runs(RunFilter(job=job, limit=10_000))
        tally: dict[str, int] = {}
        for run in runs:
            tally[run.state] = tally.get(run.state, 0) + 1
        lines.append(f"{job} runs: {tally}")
        for run in runs[:6]:  # the newest: what processing was doing at the end
            lines.append(
                f"  run {run.id} {run.state} attempt {run.attempt} payload {run.payload} "
                f"enqueued {run.enqueued_at} started {run.started_at} finished "
                f"{run.finished_at} worker {run.worker} error {run.error}"
            )
    return "\n".join(lines)


async def _refresh_runs(store: Store) -> list[dict[str, Any]]:
    runs = await store.list_runs(RunFilter(job="refresh-connection", limit=10_000))
    return [json.loads(r.result) for r in runs if r.state is RunState.SUCCEEDED and r.result]


@pytest.mark.timeout(420)
async def test_every_event_arrives_once_and_in_time_from_a_hostile_provider(
    tmp_path: Path, any_url: str, roles: Roles
) -> None:
    rng = random.Random()
    async with sandboxed(
        any_url, tmp_path, TOML, refresh_job=BUILTIN["refresh-connection"]
    ) as setup:
        setup.sandbox.configure(**HOSTILE, seed=rng.randrange(2**32))
        connections = setup.connections
        ids: list[int] = []
        automation_ids: list[int] = []
        automations = Automations(
            connections.store, connections.providers, connections.session, connections,
            process_job=BUILTIN["process-automation"],
        )  # fmt: skip
        for owner in OWNERS:
            tokens = setup.sandbox.grants.mint(owner)
            added = await connections.add(
                provider="sandbox", owner=owner, access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"], expires_in=tokens["expires_in"],
            )  # fmt: skip
            ids.append(added.id)
            for trigger in TRIGGERS:
                made = await automations.add(
                    name=f"{owner}-{trigger}", connection_id=added.id, trigger=trigger,
                    every=timedelta(seconds=10), start="beginning",
                    steps=[{"name": "deliver", "call": "tests.faults.handlers:deliver"}],
                )  # fmt: skip
                automation_ids.append(made.id)
        started = [
            roles("scheduler", env=setup.env),
            roles("worker", "--tier", "light", env=setup.env),
            roles("worker", "--tier", "heavy", env=setup.env),
        ]
        for role in started:
            role.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        try:
            chaos = asyncio.create_task(_chaos(started, rng, stop))
            emitting = asyncio.create_task(_emit(setup, rng, EMITTING))
            await _lose_one_answer(setup)
            items = await emitting
            last_emitted = loop.time()
            keys = {str(item["id"]) for item in items}
            left = len(keys) * len(automation_ids)
            while left and loop.time() < last_emitted + DELIVERY:
                await asyncio.sleep(1)
                left = await _undelivered(automations, automation_ids, keys)
            delivered_within = loop.time() - last_emitted
            behind = await _behind(automations, automation_ids, keys) if left else ""
            stop.set()
            killed = await chaos
        finally:
            codes = [role.stop() for role in started]
        stats = setup.sandbox.grants.stats
        store = connections.store
        ledgers = [await automations.events(a, limit=10_000) for a in automation_ids]
        states = [(await connections.get(i)).state for i in ids]
        refresh_runs = await _refresh_runs(store)
        chains = [await store.list_runs(RunFilter(job="refresh-connection", state=RunState.QUEUED))]
    output = "\n".join(r.output() for r in started)
    assert left == 0, (
        f"{left} undelivered {DELIVERY:g}s after the last item; killed {killed}\n{behind}\n"
        + "\n".join(r.output()[-3000:] for r in started)
    )
    assert killed, "nothing was killed"
    assert codes == [0] * len(started), "\n".join(r.output()[-3000:] for r in started)
    # Exactly once by the ledger: each item once per automation, each processed. (A step
    # may run twice when its worker is killed mid-step: steps are at-least-once.)
    for ledger in ledgers:
        assert sorted(int(e.key) for e in ledger) == sorted(int(k) for k in keys)
        assert {e.state for e in ledger} == {EventState.DONE}
    # The provider's faults did strike, and no paused account was asked again.
    assert stats.pauses > 0
    assert stats.lost_answers > 0
    assert stats.paused_violations == 0, stats.violations
    # No grant lost with a 10 s grace window.
    grants = [line for line in output.splitlines() if "invalid_grant" in line or "answer" in line]
    assert (stats.reuse_revocations, states) == (0, [ConnectionState.ACTIVE] * len(ids)), grants
    assert not any(g.revoked for g in setup.sandbox.grants.grants.values())
    # Every refresh run refreshed or left the next one queued, and every chain is alive.
    assert refresh_runs
    assert all(r["refreshed"] or r["next"] for r in refresh_runs), refresh_runs
    waiting = {run.payload["connection_id"] for run in chains[0] if run.payload}
    assert waiting == set(ids)
    print(f"delivered within {delivered_within:.1f}s; killed {killed}; stats {stats}")
