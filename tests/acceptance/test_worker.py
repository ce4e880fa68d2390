"""Workers on a real SQLite file: outcomes, retries, limits, the two tiers, cancellation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from cronlink import App, RunContext
from cronlink.jobs import new_run
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import RunFilter, Store, store_for
from tests.acceptance.worker_kit import enqueue, finished, running_worker, wait_until
from tests.postgres import fresh_schema


async def test_light_run_succeeds_with_result_and_logs(any_store: Store) -> None:
    run_id = await enqueue(any_store, "ok", {"x": 1})
    async with running_worker(any_store, Tier.LIGHT):
        run = await finished(any_store, run_id)
    assert run.state is RunState.SUCCEEDED
    assert run.result is not None
    assert '"attempt": 1' in run.result
    assert f"ok#{run_id}" in run.result
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.duration_ms is not None
    logs = await any_store.run_logs(run_id)
    assert [(level, text) for _, _, level, text in logs] == [("info", "payload is {'x': 1}")]


async def test_failures_retry_with_backoff_then_dead(any_store: Store) -> None:
    run_id = await enqueue(any_store, "boom")
    async with running_worker(any_store, Tier.LIGHT):
        run = await finished(any_store, run_id)
    assert run.state is RunState.DEAD
    assert run.attempt == 3
    assert run.error is not None
    assert run.error.type == "ValueError"
    assert run.error.message == "boom on attempt 3"
    assert "Traceback" in run.error.traceback


async def test_retry_on_excludes_other_errors(any_store: Store) -> None:
    run_id = await enqueue(any_store, "picky")
    async with running_worker(any_store, Tier.LIGHT):
        run = await finished(any_store, run_id)
    assert run.state is RunState.FAILED
    assert run.attempt == 1


async def test_light_timeout_is_recorded_timed_out(any_store: Store) -> None:
    run_id = await enqueue(any_store, "slow")
    async with running_worker(any_store, Tier.LIGHT):
        run = await finished(any_store, run_id)
    assert run.state is RunState.TIMED_OUT
    assert run.error is not None
    assert run.error.reason == "timeout"
    assert "timeout of 0.3s" in run.error.message


async def test_blocking_handler_runs_in_a_thread(any_store: Store) -> None:
    ids = [await enqueue(any_store, "blocking") for _ in range(5)]
    began = time.monotonic()
    async with running_worker(any_store, Tier.LIGHT):
        for run_id in ids:
            assert (await finished(any_store, run_id)).state is RunState.SUCCEEDED
    # Five 0.2 s sleeps in parallel threads, not one after the other on the loop.
    assert time.monotonic() - began < 0.9


async def test_cancel_running_run(any_store: Store) -> None:
    run_id = await enqueue(any_store, "sleepy", 30)
    async with running_worker(any_store, Tier.LIGHT):

        async def running() -> bool:
            return (await any_store.get_run(run_id)).state is RunState.RUNNING

        await wait_until(running)
        await any_store.request_cancel(run_id, datetime.now(UTC))
        run = await finished(any_store, run_id)
    assert run.state is RunState.CANCELLED


async def test_light_hands_work_to_heavy(any_store: Store) -> None:
    run_id = await enqueue(any_store, "hand-over")
    async with running_worker(any_store, Tier.LIGHT), running_worker(any_store, Tier.HEAVY):
        light = await finished(any_store, run_id)
        assert light.result is not None
        heavy = await finished(any_store, int(light.result))
    assert heavy.reason is Reason.ENQUEUE
    assert heavy.tier is Tier.HEAVY
    assert heavy.result == "42"


async def test_heavy_runs_in_a_child_process(any_store: Store) -> None:
    run_id = await enqueue(any_store, "heavy-ok")
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    assert run.result is not None
    assert f'"pid": {__import__("os").getpid()}' not in run.result
    assert run.peak_memory is not None
    assert run.peak_memory > 1_000_000
    logs = await any_store.run_logs(run_id)
    assert [text for _, _, _, text in logs] == ["in child"]


async def test_heavy_child_enqueues_through_the_parent(any_store: Store) -> None:
    run_id = await enqueue(any_store, "heavy-hand-over")
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    assert run.result is not None
    queued = await any_store.get_run(int(run.result))
    assert queued.job == "ok"
    assert queued.payload == "from child"


async def test_heavy_error_is_reported(any_store: Store) -> None:
    run_id = await enqueue(any_store, "heavy-boom")
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert run.error.type == "RuntimeError"
    assert "child failed" in run.error.traceback


async def test_heavy_memory_limit_kills_the_child(any_store: Store) -> None:
    run_id = await enqueue(any_store, "hog")
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.FAILED
    assert run.attempt == 1  # a memory kill is not retried
    assert run.error is not None
    assert run.error.reason == "memory"
    assert run.peak_memory is None or run.peak_memory > 150 * 2**20
    # Killed, it still spent: what was sampled up to the kill counts towards usage.
    assert run.memory_mib_s is not None
    assert run.memory_mib_s > 0


async def test_a_heavy_run_reports_its_cpu_time_and_memory_seconds(any_store: Store) -> None:
    run_id = await enqueue(any_store, "spin", 0.5)
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    assert run.cpu_ms is not None
    assert run.duration_ms is not None
    assert run.peak_memory is not None
    # A loop spinning for half a second of CPU time, never more than the attempt lasted
    # (one thread).
    assert 100 <= run.cpu_ms <= run.duration_ms + 100
    assert run.memory_mib_s is not None
    assert 0 < run.memory_mib_s <= run.peak_memory / 2**20 * run.duration_ms / 1000 * 1.5
    assert run.requests == 0


async def test_heavy_timeout_kills_the_child(any_store: Store) -> None:
    run_id = await enqueue(any_store, "heavy-slow")
    async with running_worker(any_store, Tier.HEAVY):
        run = await finished(any_store, run_id)
    assert run.state is RunState.TIMED_OUT
    assert run.duration_ms is not None
    assert run.duration_ms < 10_000


async def test_cpu_bound_heavy_work_does_not_stall_light_runs(any_store: Store) -> None:
    spinners = [await enqueue(any_store, "spin", 3) for _ in range(2)]
    async with running_worker(any_store, Tier.HEAVY), running_worker(any_store, Tier.LIGHT):

        async def spinning() -> bool:
            runs = [await any_store.get_run(i) for i in spinners]
            return all(r.state is RunState.RUNNING for r in runs)

        await wait_until(spinning)
        await asyncio.sleep(0.3)  # let the children get going on the CPU
        latencies = []
        for _ in range(10):
            began = time.monotonic()
            await finished(any_store, await enqueue(any_store, "ok"))
            latencies.append(time.monotonic() - began)
        states = [(await any_store.get_run(i)).state for i in spinners]
        assert states == [RunState.RUNNING, RunState.RUNNING]
        for run_id in spinners:
            await finished(any_store, run_id)
    # Light runs kept flowing while both cores were busy in children.
    assert sorted(latencies)[len(latencies) // 2] < 0.5


async def test_many_light_runs_all_complete(any_store: Store) -> None:
    ids = [await enqueue(any_store, "ok", i) for i in range(200)]
    async with running_worker(any_store, Tier.LIGHT):

        async def all_done() -> bool:
            done = await any_store.list_runs(RunFilter(state=RunState.SUCCEEDED, limit=1000))
            return len(done) == len(ids)

        await wait_until(all_done)


async def test_heartbeat_keeps_a_long_run_leased(any_store: Store) -> None:
    run_id = await enqueue(any_store, "sleepy", 1.0)
    async with running_worker(any_store, Tier.LIGHT, lease=timedelta(seconds=0.5)):

        async def running() -> bool:
            return (await any_store.get_run(run_id)).state is RunState.RUNNING

        await wait_until(running)
        await asyncio.sleep(0.7)
        assert await any_store.reap_expired(datetime.now(UTC)) == []
        run = await finished(any_store, run_id)
    assert run.state is RunState.SUCCEEDED
    assert run.attempt == 1


async def test_shutdown_hands_unfinished_runs_back_after_the_grace(any_store: Store) -> None:
    run_id = await enqueue(any_store, "sleepy", 30)
    async with running_worker(any_store, Tier.LIGHT, shutdown_grace=timedelta(seconds=0.2)):

        async def running() -> bool:
            return (await any_store.get_run(run_id)).state is RunState.RUNNING

        await wait_until(running)
    run = await any_store.get_run(run_id)
    assert run.state is RunState.QUEUED
    assert run.error is not None
    assert run.error.reason == "shutdown"


async def test_postgres_notify_wakes_an_idle_worker_at_once() -> None:
    with fresh_schema() as url:
        worker_store, other_process = store_for(url), store_for(url)
        await worker_store.open()
        await other_process.open()
        try:
            # Polling every 60 s: only a notification can start the run quickly.
            async with running_worker(worker_store, Tier.LIGHT, poll=60):
                await asyncio.sleep(0.3)  # the worker is idle, listening
                began = time.monotonic()
                run = await finished(other_process, await enqueue(other_process, "ok"), 10)
                assert run.state is RunState.SUCCEEDED
                assert time.monotonic() - began < 2
        finally:
            await worker_store.close()
            await other_process.close()


odd = App()


@odd.job(name="odd-result", max_attempts=1)
async def odd_result(ctx: RunContext) -> str:
    ctx.log.info("a line with \x00 and \ud800")
    return "a\x00b\udfffc"


@odd.job(name="odd-error", max_attempts=1)
async def odd_error(ctx: RunContext) -> None:
    raise ValueError("bad \x00 \ud83d")


async def test_text_no_engine_can_hold_is_kept_escaped_and_the_run_ends(any_store: Store) -> None:
    """A handler's result, error and log lines (or a target's answer) may hold a NUL or a
    lone surrogate: the run still ends, with them written as escapes."""
    now = datetime.now(UTC)
    ids = [await any_store.enqueue(new_run(odd.get(name), Reason.API), now)
           for name in ("odd-result", "odd-error")]  # fmt: skip
    async with running_worker(any_store, Tier.LIGHT, odd.jobs):
        ran, failed = [await finished(any_store, run_id) for run_id in ids]
    assert (ran.state, ran.result) == (RunState.SUCCEEDED, "a\\u0000b\\udfffc")
    [(_, _, _, line)] = await any_store.run_logs(ran.id)
    assert line == "a line with \\u0000 and \\ud800"
    assert failed.state is RunState.FAILED
    assert failed.error is not None
    assert failed.error.message == "bad \\u0000 \\ud83d"
    assert "bad \\u0000 \\ud83d" in failed.error.traceback
