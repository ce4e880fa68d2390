"""Process logs: JSON lines that carry the run id of every line an attempt logs, text on a
terminal, and the secrets cronlink is given masked wherever they would appear."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from cronlink.engine.scheduler import Scheduler
from cronlink.observe import logs
from cronlink.records.runs import Tier
from cronlink.scrubbing import MASK
from cronlink.store import Store
from tests.acceptance.handlers import app
from tests.acceptance.worker_kit import enqueue, finished, running_worker

SECRET = "cron-secret-canary-7f3a9c"


@pytest.fixture
def restored() -> Iterator[None]:
    """pytest's handlers back after a test that set up logging as a process would."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def as_a_process(style: logs.Style) -> None:
    """`logs.configure` on a root logger without handlers, as in a fresh `cronlink`."""
    logging.getLogger().handlers[:] = []
    logs.configure(verbose=False, style=style)


@pytest.mark.usefixtures("restored")
async def test_json_lines_carry_the_run_and_mask_secrets(
    sqlite_store: Store, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", f"other-secret-value,{SECRET}")
    as_a_process("json")
    run_id = await enqueue(sqlite_store, "ok", f"holding {SECRET}")
    async with running_worker(sqlite_store, Tier.LIGHT):
        await finished(sqlite_store, run_id)
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        logging.getLogger("cronlink.test").exception("outside any run")
    err = capsys.readouterr().err
    assert SECRET not in err
    lines = [json.loads(line) for line in err.splitlines()]
    [said] = [line for line in lines if line["message"].startswith("payload is")]
    assert said["run_id"] == run_id
    assert said["job"] == "ok"
    assert said["message"] == f"payload is holding {MASK}"
    assert said["level"] == "info"
    [outside] = [line for line in lines if line["message"] == "outside any run"]
    assert "run_id" not in outside
    assert f"failed with {MASK}" in outside["error"]


@pytest.mark.usefixtures("restored")
async def test_text_lines_name_the_run(
    sqlite_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    as_a_process("text")
    run_id = await enqueue(sqlite_store, "ok", "hello")
    async with running_worker(sqlite_store, Tier.LIGHT):
        await finished(sqlite_store, run_id)
    err = capsys.readouterr().err
    assert f"cronlink.run.ok: [run {run_id}] payload is hello" in err


def test_logging_set_up_by_the_host_process_is_left_alone() -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    assert before  # pytest's own
    logs.configure(verbose=True, style="json")
    assert root.handlers == before


@pytest.mark.usefixtures("restored")
@pytest.mark.parametrize("tier", [Tier.LIGHT, Tier.HEAVY])
async def test_failed_attempts_and_dead_runs_are_logged(
    sqlite_store: Store, capsys: pytest.CaptureFixture[str], tier: Tier
) -> None:
    as_a_process("json")
    job, error = ("boom", "ValueError") if tier is Tier.LIGHT else ("heavy-boom", "RuntimeError")
    run_id = await enqueue(sqlite_store, job)
    async with running_worker(sqlite_store, tier):
        run = await finished(sqlite_store, run_id)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    told = [line for line in lines if line.get("run_id") == run_id and line["level"] != "info"]
    retried = [line for line in told if line["level"] == "warning"]
    [gave_up] = [line for line in told if line["level"] == "error"]
    assert len(retried) == run.max_attempts - 1
    for attempt, line in enumerate(retried, start=1):
        assert line["job"] == job
        assert f"attempt {attempt} of {run.max_attempts} failed" in line["message"]
        assert f"ValueError: boom on attempt {attempt}" in line["message"]
        assert "retrying at" in line["message"]
    assert f"run {run_id} of {job} is {run.state}" in gave_up["message"]
    assert f"after {run.max_attempts} attempt" in gave_up["message"]
    assert error in gave_up["message"]


@pytest.mark.usefixtures("restored")
async def test_a_run_declared_dead_by_the_reaper_is_logged(
    sqlite_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    as_a_process("json")
    run_id = await enqueue(sqlite_store, "slow")  # one attempt only
    [claimed] = await sqlite_store.claim("gone", Tier.LIGHT, 1, timedelta(0), datetime.now(UTC))
    assert claimed.id == run_id
    stop = asyncio.Event()
    reaping = asyncio.create_task(Scheduler(sqlite_store, app.jobs).run(stop))
    try:
        await finished(sqlite_store, run_id)
    finally:
        stop.set()
        await reaping
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [dead] = [line for line in lines if line["message"].startswith(f"run {run_id} ")]
    assert dead["level"] == "error"
    assert dead["message"] == f"run {run_id} of slow lost its worker: now dead"
