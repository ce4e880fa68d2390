"""A worker frozen (SIGSTOP) past its lease, then resumed: its late completion must not
overwrite the outcome of the attempt that took over (lease fencing), on both engines."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

from cronlink.store import store_for
from tests.acceptance.test_cli import WORKER_TOML, cronlink, output


def state_of(run_id: int, url: str) -> dict[str, object]:
    """Read straight from the database: a `cronlink run show` process takes about as long
    to start as the first attempt lasts on a slow machine, and the worker must be frozen
    while that attempt still runs."""

    async def read() -> dict[str, object]:
        store = store_for(url)
        await store.open(migrate=False)
        try:
            run = await store.get_run(run_id)
        finally:
            await store.close()
        return {"state": run.state.value, "attempt": run.attempt, "result": run.result}

    return asyncio.run(read())


def test_a_resumed_worker_cannot_overwrite_the_retry(tmp_path: Path, any_url: str) -> None:
    (tmp_path / "cronlink.toml").write_text(WORKER_TOML.format(url=any_url))
    run_id = json.loads(output("trigger", "slow-first", "--json", cwd=tmp_path))["run_id"]
    frozen = cronlink("worker", "--tier", "light", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while state_of(run_id, any_url)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    frozen.send_signal(signal.SIGSTOP)
    rescuer = cronlink("run", cwd=tmp_path)
    try:
        while state_of(run_id, any_url)["state"] != "succeeded":
            assert time.monotonic() < deadline, "the retry did not take over"
            time.sleep(0.1)
        taken_over = state_of(run_id, any_url)
        assert taken_over["attempt"] == 2
        assert taken_over["result"] == "2"
        frozen.send_signal(signal.SIGCONT)  # attempt 1 wakes up and finishes late
        time.sleep(4)
        assert state_of(run_id, any_url) == taken_over
    finally:
        logs = []
        for proc in (frozen, rescuer):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            logs.append(proc.communicate(timeout=30)[0])
    assert f"run {run_id} lost its lease before completing; outcome discarded" in logs[0]
