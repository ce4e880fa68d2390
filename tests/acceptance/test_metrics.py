"""`/metrics` on a real server, parsed with prometheus-client's own parser: the counts
match the runs made, the queue gauges match the database, and a worker of a fleet serves
its own counters on `--metrics-port`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from cronlink import control
from cronlink.jobs import new_run
from cronlink.records.api_tokens import Scope
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import Store, store_for
from cronlink.store.schema import connections
from cronlink.web.server import serving
from tests.acceptance.handlers import app
from tests.acceptance.worker_kit import enqueue, finished, running_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@dataclass
class Scraper:
    url: str
    http: aiohttp.ClientSession
    token: str

    async def scrape(self) -> Samples:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.http.get(self.url + "/metrics", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            assert answer.content_type == "text/plain"
            return parse(await answer.text())


@pytest.fixture
async def scraper(any_store: Store) -> AsyncIterator[Scraper]:
    _, token = await control.create_token(any_store, "prometheus", Scope.READ, None, _now())
    async with serving(any_store, app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as http:
        yield Scraper(url, http, token)


def _now() -> datetime:
    return datetime.now(UTC)


async def test_metrics_need_a_token(scraper: Scraper) -> None:
    async with scraper.http.get(scraper.url + "/metrics") as answer:
        assert answer.status == 401
    async with scraper.http.get(scraper.url + "/openapi.json") as answer:
        assert "/metrics" not in (await answer.json())["paths"]


async def test_counts_match_the_runs_made_and_the_queue_the_database_holds(
    any_store: Store, scraper: Scraper
) -> None:
    before = await scraper.scrape()
    late = _now() - timedelta(seconds=2)
    scheduled = new_run(app.get("ok"), Reason.SCHEDULE, scheduled_for=late)
    await any_store.enqueue(scheduled, _now())
    ids = [await enqueue(any_store, "ok") for _ in range(2)] + [await enqueue(any_store, "boom")]

    waiting = await scraper.scrape()
    assert value(waiting, "cronlink_queue_depth", tier="light") == 4
    assert value(waiting, "cronlink_queue_depth", tier="heavy") == 0
    assert value(waiting, "cronlink_oldest_queued_age_seconds", tier="light") > 0

    async with running_worker(any_store, Tier.LIGHT):
        dead = await finished(any_store, ids[-1])
        for run_id in ids[:-1]:
            assert (await finished(any_store, run_id)).state is RunState.SUCCEEDED
    after = await scraper.scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("cronlink_attempts_total", job="ok", tier="light", state="succeeded") == 3
    assert grew("cronlink_attempts_total", job="boom", tier="light", state="retrying") == 2
    assert grew("cronlink_attempts_total", job="boom", tier="light", state=dead.state.value) == 1
    assert grew("cronlink_run_duration_seconds_count", job="ok", tier="light") == 3
    assert grew("cronlink_firing_delay_seconds_count", tier="light") == 1
    assert grew("cronlink_firing_delay_seconds_sum", tier="light") >= 2
    assert value(after, "cronlink_queue_depth", tier="light") == 0
    assert value(after, "cronlink_runs_running", tier="light") == 0
    assert value(after, "cronlink_worker_memory_bytes", tier="light") > 10 * 2**20


async def test_connections_are_counted_by_state_and_health(any_store: Store) -> None:
    rows = [("a", "active", "healthy"), ("b", "active", "healthy"), ("c", "needs_reauth", "down")]
    await any_store.transact(
        lambda c: c.execute(
            insert(connections),
            [
                {"provider": "sandbox", "owner": owner, "state": state, "health": health,
                 "scopes": "", "secrets": "sealed", "key_id": "k", "version": 1,
                 "refresh_failures": 0, "health_failures": 0, "health_successes": 0,
                 "created_at": _now(), "updated_at": _now()}
                for owner, state, health in rows
            ],
        ),
        write=True,
    )  # fmt: skip
    snapshot = await any_store.snapshot(_now())
    assert snapshot.connections == {("active", "healthy"): 2, ("needs_reauth", "down"): 1}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_worker_of_a_fleet_serves_its_own_metrics(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cronlink.db'}"
    store = store_for(url)
    await store.open()
    run_id = await enqueue(store, "ok")
    port = _free_port()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cronlink", "worker", "--tier", "light", "--metrics-port",
        str(port), "--database-url", url, "--app", "tests.acceptance.handlers:app",
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        await finished(store, run_id, within=60)
        samples: Samples = {}

        async def counted() -> bool:
            nonlocal samples
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/metrics") as answer,
                ):
                    samples = parse(await answer.text())
            except aiohttp.ClientError:
                return False
            return bool(value(samples, "cronlink_attempts_total", job="ok", tier="light",
                              state="succeeded"))  # fmt: skip

        await wait_until(counted, within=30)
        assert value(samples, "cronlink_worker_memory_bytes", tier="light") > 10 * 2**20
    finally:
        worker.terminate()
        out = (await asyncio.wait_for(worker.communicate(), 30))[0].decode()
        await store.close()
    assert "Traceback" not in out, out


async def test_a_busy_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cronlink", "scheduler", "--metrics-port", str(port),
            "--database-url", f"sqlite:///{tmp_path / 'cronlink.db'}",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.decode()
    assert "Traceback" not in out.decode()


async def test_no_secret_reaches_the_metrics(
    any_store: Store, scraper: Scraper, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "metrics-canary-5d1e0b"
    monkeypatch.setenv("CRON_SECRET", canary)
    run_id = await enqueue(any_store, "boom", {"token": canary})
    async with running_worker(any_store, Tier.LIGHT):
        await finished(any_store, run_id)
    headers = {"Authorization": f"Bearer {scraper.token}"}
    async with scraper.http.get(scraper.url + "/metrics", headers=headers) as answer:
        text = await answer.text()
    assert "cronlink_attempts_total" in text
    assert canary not in text
    assert scraper.token not in text
