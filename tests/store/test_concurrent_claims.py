"""Workers claiming at the same moment, each through its own store (its own connections)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from cronlink.records.runs import Overlap, RunState, Tier
from cronlink.store import Done, Outcome, RunFilter, Tick, store_for
from tests.store.test_contract import LEASE, T0, tick

ROUNDS = 30


async def test_two_due_instants_of_a_replace_job_claimed_at_once_leave_one_running(
    any_url: str,
) -> None:
    """Both runs start, and exactly one replaces the other: never both cancelled."""
    workers = [store_for(any_url), store_for(any_url)]
    for store in workers:
        await store.open()
    try:
        for i in range(ROUNDS):
            first = T0 + timedelta(minutes=2 * i)
            second = first + timedelta(minutes=1)
            ticks: list[Tick] = [
                tick("r", first, overlap="replace"),
                tick("r", second, overlap="replace"),
            ]
            await workers[0].record_ticks(ticks, [], first)
            now = second + timedelta(seconds=1)
            claims = await asyncio.gather(
                *(s.claim(f"w{k}", Tier.LIGHT, 1, LEASE, now) for k, s in enumerate(workers))
            )
            running = await workers[0].list_runs(RunFilter(state=RunState.RUNNING))
            assert len(running) == sum(map(len, claims)) == 2
            assert sum(not r.cancel_requested for r in running) == 1, f"round {i}: {running}"
            assert {r.overlap for r in running} == {Overlap.REPLACE}
            for run in running:
                outcome = Outcome(state=RunState.SUCCEEDED)
                await workers[0].complete(
                    [Done(run_id=run.id, lease_token=run.lease_token or "", outcome=outcome)], now
                )
    finally:
        for store in workers:
            await store.close()
