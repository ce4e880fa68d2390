"""`cronlink automations`: create from a steps file, operate, read events and dead
letters, retry them; bad input named precisely."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronlink.cli import cli
from cronlink.cli.automation_cmds import _processed
from cronlink.cli.options import settings_from
from cronlink.connections.crypto import generate_key
from cronlink.records.automations import EventState, PollRecord
from cronlink.services import automations_for
from cronlink.store import store_for
from tests.store.test_automation_store import RUN

STEPS = """
[[steps]]
name = "classify"
call = "tests.acceptance.automation_steps:classify"

[[steps]]
name = "notify"
http = { url = "/api/hooks/summaries", json = { label = "{steps.classify.label}" } }
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cronlink.toml").write_text(
        f'database_url = "sqlite:///{tmp_path / "c.db"}"\n[connections]\n'
    )
    (tmp_path / "steps.toml").write_text(STEPS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRONLINK_SECRET_KEY", generate_key())
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _seen(home: Path, keys: list[str], dead: str | None = None) -> None:
    """What a poll of automation 1 would have committed (and, for `dead`, a step that
    failed for good)."""

    async def go() -> None:
        store = store_for(f"sqlite:///{home / 'c.db'}")
        await store.open()
        try:
            now = datetime.now(UTC)
            [(automation, _)] = await store.automations.take_due(now, 1, "t", now)
            record = PollRecord(
                automation=automation, token="t", items=[(k, {"id": k}) for k in keys],
                cursor=automation.cursor, next_poll_at=now, fire=True,
            )  # fmt: skip
            await store.automations.record_polls([record], now, RUN)
            if dead is not None:
                work = await store.automations.take_event(automation.id, 999, now)
                assert work is not None
                await store.automations.save_progress(
                    work.event.id, 999, state=EventState.DEAD_LETTER, step=1,
                    outputs={"classify": {"label": "x"}}, error=dead, now=now,
                )  # fmt: skip
        finally:
            await store.close()

    asyncio.run(go())


def test_add_operate_and_read_events(home: Path) -> None:
    code, _ = run("connections", "add", "--provider", "sandbox", "--owner", "a",
                  "--access-token", "at-1")  # fmt: skip
    assert code == 0
    code, out = run(
        "automations", "add", "--connection", "1", "--trigger", "new_item", "--steps",
        "steps.toml", "--every", "30s", "--param", "folder=inbox", "--start", "beginning",
    )  # fmt: skip
    assert code == 0, out
    assert out.startswith("automation 1 (new_item-1) added; next poll ")
    shown = json.loads(run("automations", "show", "new_item-1", "--json")[1])
    assert shown["params"] == {"folder": "inbox"}
    assert shown["interval"] == "0:00:30"
    assert [s["name"] for s in shown["steps"]] == ["classify", "notify"]
    assert json.loads(run("automations", "pause", "1", "--json")[1])["state"] == "paused"
    assert json.loads(run("automations", "resume", "1", "--json")[1])["state"] == "active"
    assert "new_item-1" in run("automations", "list")[1]
    _seen(home, ["k1", "k2"], dead="step 1 (notify): HTTP 500")
    listed = json.loads(run("automations", "events", "1", "--json")[1])
    assert [(e["key"], e["state"]) for e in listed] == [("k1", "dead_letter"), ("k2", "pending")]
    code, out = run("automations", "dead-letter")
    assert code == 0
    assert "HTTP 500" in out
    code, out = run("automations", "dead-letter", "retry")
    assert code == 2
    assert "Error: name the events to retry, or give --all" in out
    assert run("automations", "dead-letter", "retry", "--all") == (0, "1 event queued again\n")
    again = json.loads(run("automations", "events", "1", "--state", "pending", "--json")[1])
    assert [(e["key"], e["step"], e["outputs"]) for e in again] == [
        ("k1", 1, {"classify": {"label": "x"}}), ("k2", 0, {}),
    ]  # fmt: skip
    assert run("automations", "replay", "2") == (
        2,
        "error: event 2 is pending; it is being processed\n",
    )


def test_bad_input_is_named(home: Path) -> None:
    run("connections", "add", "--provider", "sandbox", "--owner", "a", "--access-token", "x")
    (home / "bad.toml").write_text('[[steps]]\nname = "n"\ncall = "nocolon"\n')
    code, out = run("automations", "add", "--connection", "1", "--trigger", "new_item",
                    "--steps", "bad.toml")  # fmt: skip
    assert code == 2
    assert "steps[0] (n).call: 'nocolon' must look like package.module:function" in out
    (home / "broken.json").write_text("{")
    code, out = run("automations", "add", "--connection", "1", "--trigger", "new_item",
                    "--steps", "broken.json")  # fmt: skip
    assert code == 2
    assert "broken.json is not valid JSON" in out
    code, out = run("automations", "add", "--connection", "1", "--trigger", "nope",
                    "--steps", "steps.toml")  # fmt: skip
    assert (code, out) == (
        2, "error: provider 'sandbox' has no trigger 'nope'; its triggers: change, google_sync, "
        "graph_delta, new_email, new_item, stripe_like\n",
    )  # fmt: skip
    code, out = run("automations", "add", "--connection", "9", "--trigger", "new_item",
                    "--steps", "steps.toml")  # fmt: skip
    assert code == 1
    assert "no connection has id 9" in out
    code, out = run("automations", "add", "--connection", "1", "--schedule", "61 * * * *",
                    "--steps", "steps.toml")  # fmt: skip
    assert (code, out) == (2, "error: schedule: minute field: 61 is out of range 0-59\n")
    assert run("automations", "show", "nope")[1] == "error: no automation 'nope'\n"


def test_run_wait_follows_a_sync_to_its_end_and_a_dead_letter_exits_1(home: Path) -> None:
    """`automations run --wait` reads the event until it ends, telling its progress the
    records a sync has copied; what a worker would write (the sync's checkpoints, then the
    outcome) is written here through the store."""
    run("connections", "add", "--provider", "sandbox", "--owner", "a", "--access-token", "at")
    run("automations", "add", "--connection", "1", "--schedule", "0 2 * * *", "--name", "sync",
        "--steps", "steps.toml")  # fmt: skip
    told: list[tuple[str, int, int | None]] = []

    async def work(outcome: EventState, error: str | None) -> None:
        store = store_for(f"sqlite:///{home / 'c.db'}")
        await store.open()
        try:
            now = datetime.now(UTC)
            while (taken := await store.automations.take_event(1, 999, now)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            event_id = taken.event.id
            for copied in (100, 200):
                await asyncio.sleep(0.8)
                await store.automations.save_progress(
                    event_id, 999, state=EventState.RUNNING, step=0,
                    outputs={"copy": {"checkpoint": {"copied": copied}}}, error=None, now=now,
                )  # fmt: skip
            await asyncio.sleep(0.8)
            await store.automations.save_progress(
                event_id, 999, state=outcome, step=1, outputs={"copy": {"copied": 200}},
                error=error, now=now,
            )  # fmt: skip
        finally:
            await store.close()

    async def followed() -> None:
        """The progress `--wait` draws on a terminal, as it is told."""
        settings = settings_from(None, None, None)
        async with automations_for(settings) as automations:
            event = (await automations.events("sync"))[-1]
            await _processed(automations, event, lambda *told_: told.append(told_))

    async def waited(outcome: EventState, error: str | None) -> tuple[int, str]:
        worker = asyncio.create_task(work(outcome, error))
        answer = await asyncio.to_thread(run, "automations", "run", "sync", "--wait")
        await worker
        return answer

    async def watched() -> tuple[int, str]:
        cli_side = asyncio.create_task(waited(EventState.DONE, None))
        while not await _pending(home):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await followed()
        return await cli_side

    code, out = asyncio.run(watched())
    assert code == 0, out
    assert 'done: {"copy": {"copied": 200}}' in out
    assert ("copy: records copied", 100, None) in told
    assert told[-1] == ("copy: records copied", 200, None)
    code, out = asyncio.run(waited(EventState.DEAD_LETTER, "step 0 (copy): HTTP 500"))
    assert code == 1
    assert out.splitlines()[-1] == "event 2 dead-lettered: step 0 (copy): HTTP 500"


async def _pending(home: Path) -> bool:
    store = store_for(f"sqlite:///{home / 'c.db'}")
    await store.open()
    try:
        return bool(await store.automations.events(1, EventState.PENDING, 0, 1)) or bool(
            await store.automations.events(1, EventState.RUNNING, 0, 1)
        )
    finally:
        await store.close()
