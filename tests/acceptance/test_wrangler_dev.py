"""The exported Worker in Cloudflare's own runtime: `wrangler dev --test-scheduled` (workerd,
from wrangler's npm package) fires each exported cron trigger through `/__scheduled`, and
the Worker calls a real `cronlink serve` on 127.0.0.1, which queues the jobs bound to that
trigger; packed, the one `* * * * *` trigger calls `/cron/tick`.

Needs node and npm (wrangler is installed from the npm registry once per machine): where
they are missing the test is skipped saying why, and fails in CI."""

from __future__ import annotations

import asyncio
import os
import re
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from click.testing import CliRunner

from cronlink.cli import cli
from cronlink.records.runs import Reason
from cronlink.store import RunFilter
from tests.acceptance import wrangler_kit
from tests.faults.processes import Role, opened

pytestmark = [pytest.mark.slow, pytest.mark.node]

EXAMPLE = Path(__file__).parents[2] / "examples" / "migration" / "wrangler.toml"
SECRET = "s3cret-for-workerd-5f0e2a"
DATABASE = "sqlite:///{folder}/cronlink.db"


@pytest.fixture(scope="session")
def wrangler() -> wrangler_kit.Wrangler:
    try:
        return wrangler_kit.install()
    except wrangler_kit.Unavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"wrangler is needed in CI: {error}")
        pytest.skip(str(error))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """cronlink.toml holding the example's triggers, as `cronlink import` writes it."""
    config = tmp_path / "cronlink.toml"
    imported = CliRunner().invoke(cli, ["import", str(EXAMPLE), "-o", str(config)])
    assert imported.exit_code == 0, imported.stderr
    return tmp_path


@asynccontextmanager
async def serving(folder: Path) -> AsyncIterator[str]:
    """`cronlink serve` on a free port of 127.0.0.1 (SQLite in `folder`); its base URL."""
    role = Role(
        ("serve", "--port", "0"), cwd=folder,
        env={"CRON_SECRET": SECRET, "DATABASE_URL": DATABASE.format(folder=folder)},
    )  # fmt: skip
    role.start()
    try:
        async with asyncio.timeout(60):
            while not (found := re.search(r"serving on (http://[\d.:]+)", role.output())):
                assert role.alive(), role.output()
                await asyncio.sleep(0.05)
        yield found[1]
    finally:
        assert role.stop() == 0, role.output()


def export(folder: Path, app_url: str, pack: bool) -> dict[str, Any]:
    """`cronlink export wrangler` into folder/worker; the wrangler.toml written."""
    flags = ["--pack"] if pack else []
    exported = CliRunner().invoke(cli, [
        "export", "wrangler", "--app-url", app_url, "--out", str(folder / "worker"),
        "--config", str(folder / "cronlink.toml"), *flags,
    ])  # fmt: skip
    assert exported.exit_code == 0, exported.stderr
    return tomllib.loads((folder / "worker" / "wrangler.toml").read_text())


async def scheduled(worker_url: str, cron: str) -> tuple[int, str]:
    """Cloudflare's scheduled event for `cron`: wrangler's answer (500 when the Worker's
    handler threw, as Cloudflare would count a failed invocation)."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{worker_url}/__scheduled?cron={quote(cron)}", timeout=aiohttp.ClientTimeout(30)
        ) as answer,
    ):
        return answer.status, await answer.text()


async def fire(worker_url: str, cron: str) -> tuple[datetime, datetime]:
    """The event for `cron`, handled; the instants just before and after it."""
    before = datetime.now(UTC)
    assert await scheduled(worker_url, cron) == (200, "Ran scheduled event")
    return before, datetime.now(UTC)


@pytest.mark.timeout(420)  # the first run on a machine installs wrangler
async def test_each_exported_trigger_queues_its_jobs_from_workerd(
    folder: Path, wrangler: wrangler_kit.Wrangler
) -> None:
    fired: dict[str, tuple[datetime, datetime]] = {}
    async with serving(folder) as url:
        exported = export(folder, url, pack=False)
        async with wrangler_kit.dev(wrangler, folder / "worker", SECRET) as worker:
            for cron in exported["triggers"]["crons"]:
                fired[cron] = await fire(worker, cron)
    bound: dict[str, list[str]] = exported["vars"]["CRONLINK_JOBS"]
    assert sorted(fired) == sorted(bound)
    assert len(fired) == 7
    async with opened(DATABASE.format(folder=folder)) as store:
        runs = await store.list_runs(RunFilter(limit=50))
    queued = {run.job: run for run in runs}
    assert len(runs) == len(queued) == 7  # each job once
    for cron, jobs in bound.items():
        before, after = fired[cron]
        for job in jobs:
            run = queued.pop(job)
            assert run.reason is Reason.API
            # The Worker sends the event's instant: cronlink dedupes a retried invocation.
            assert run.scheduled_for is not None
            assert before - timedelta(seconds=1) <= run.scheduled_for <= after
    assert queued == {}


@pytest.mark.timeout(420)
async def test_the_packed_worker_ticks_cronlink_from_workerd(
    folder: Path, wrangler: wrangler_kit.Wrangler
) -> None:
    async with serving(folder) as url:
        exported = export(folder, url, pack=True)
        assert exported["triggers"] == {"crons": ["* * * * *"]}
        async with wrangler_kit.dev(wrangler, folder / "worker", SECRET) as worker:
            await fire(worker, "* * * * *")
            await fire(worker, "* * * * *")
        async with wrangler_kit.dev(wrangler, folder / "worker", "not-the-secret-7d3a9c") as worker:
            status, text = await scheduled(worker, "* * * * *")
    assert (status, text.splitlines()[0]) == (500, "Error: cronlink answered 401")
    async with opened(DATABASE.format(folder=folder)) as store:
        calls = [(e.action, e.target, e.outcome) for e in await store.audit.find()]
    assert sorted(calls) == sorted(
        [("cron.tick", "schedules", "accepted")] * 2 + [("cron.tick", "schedules", "denied")]
    )
