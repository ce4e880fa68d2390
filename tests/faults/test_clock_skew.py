"""Two schedulers whose clocks disagree by 2 s share one database: still one run per tick."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from cronlink import App, RunContext
from cronlink.engine.scheduler import Scheduler
from cronlink.records.runs import Fate
from cronlink.store import RunFilter, store_for


class SkewedClock:
    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return datetime.now(UTC) + self.skew


app = App()


@app.job(name="every-second", schedule="* * * * * *", misfire="all", overlap="allow")
async def every_second(ctx: RunContext) -> None:
    return None


@pytest.mark.slow
@pytest.mark.parametrize("skew", [timedelta(seconds=2), timedelta(seconds=-2)])
async def test_skewed_schedulers_start_one_run_per_tick(any_url: str, skew: timedelta) -> None:
    stores = [store_for(any_url), store_for(any_url)]
    for store in stores:
        await store.open()
    honest = Scheduler(stores[0], app.jobs)
    skewed = Scheduler(stores[1], app.jobs, SkewedClock(skew))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in (honest, skewed)]
    await asyncio.sleep(4)
    stop.set()
    await asyncio.gather(*tasks)
    fires = await stores[0].ledger("every-second", None, 100)
    runs = await stores[0].list_runs(RunFilter(job="every-second", limit=100))
    for store in stores:
        await store.close()
    instants = sorted(r.scheduled_for for r in runs if r.scheduled_for is not None)
    assert len(instants) >= 4
    assert len(instants) == len(set(instants)), "a tick started two runs"
    gaps = {b - a for a, b in itertools.pairwise(instants)}
    assert gaps == {timedelta(seconds=1)}, "a tick was lost"
    assert sorted(f.scheduled_for for f in fires) == instants
    assert {f.fate for f in fires} == {Fate.RUN}
    assert {f.run_id for f in fires} == {r.id for r in runs}
