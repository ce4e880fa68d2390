"""Process logs: JSON lines that carry the run id of every line an attempt logs, text on a
terminal, and the secrets cronlink is given masked wherever they would appear."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from cronlink.observe import logs
from cronlink.records import Tier
from cronlink.store import Store
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
    assert said["message"] == f"payload is holding {logs.MASK}"
    assert said["level"] == "info"
    [outside] = [line for line in lines if line["message"] == "outside any run"]
    assert "run_id" not in outside
    assert f"failed with {logs.MASK}" in outside["error"]


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
