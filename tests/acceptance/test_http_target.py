"""HTTP-target jobs against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from cronlink.jobs import HttpTarget, Job, build_job, new_run
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import Store
from tests.acceptance.worker_kit import finished, running_worker


class Target:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.failures_left = 0
        self.app = web.Application()
        self.app.router.add_route("*", "/{kind}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        self.seen.append(
            {"kind": kind, "headers": dict(request.headers), "body": await request.text()}
        )
        if kind == "flaky" and self.failures_left:
            self.failures_left -= 1
            return web.Response(status=503, text="try later")
        if kind == "limited" and self.failures_left:
            self.failures_left -= 1
            return web.Response(status=429, headers={"Retry-After": "1"})
        if kind == "bad":
            return web.Response(status=400, text="x" * 10_000)
        if kind == "echo":
            return web.Response(status=500, text=f"you sent {request.headers['Authorization']}")
        if kind == "slow":
            await asyncio.sleep(5)
        return web.Response(text="hello " + "y" * 5000)


@pytest.fixture
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRONLINK_TEST_SECRET", "s3cret")
    monkeypatch.setenv("CRONLINK_TEST_NAME", "world")


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, str]]:
    server = Target()
    runner = web.AppRunner(server.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def http_job(url: str, **options: Any) -> Job:
    return build_job(
        name="call",
        schedules=[],
        target=HttpTarget(
            url=url,
            headers={"Authorization": "Bearer ${CRONLINK_TEST_SECRET}"},
            body='{"hello": "${CRONLINK_TEST_NAME}"}',
        ),
        min_backoff=0.01,
        max_backoff=0.05,
        **options,
    )


async def run_once(store: Store, job: Job) -> int:
    run_id = await store.enqueue(
        new_run(job, Reason.SCHEDULE, scheduled_for=datetime(2025, 1, 1, tzinfo=UTC)),
        datetime.now(UTC),
    )
    async with running_worker(store, job.tier, {job.name: job}):
        await finished(store, run_id)
    return run_id


@pytest.mark.usefixtures("_env")
async def test_success_sends_dedup_headers_and_env_secrets(
    sqlite_store: Store, target: tuple[Target, str]
) -> None:
    server, base = target
    run_id = await run_once(sqlite_store, http_job(f"{base}/ok"))
    run = await sqlite_store.get_run(run_id)
    assert run.state is RunState.SUCCEEDED
    assert run.result is not None
    assert run.result.startswith("200 hello ")
    assert len(run.result) < 2100  # a bounded excerpt, not the whole body
    [seen] = server.seen
    assert seen["headers"]["Authorization"] == "Bearer s3cret"
    assert seen["headers"]["X-Cronlink-Scheduled-Time"] == "2025-01-01T00:00:00+00:00"
    assert seen["headers"]["Idempotency-Key"] == "call@2025-01-01T00:00:00+00:00"
    assert seen["body"] == '{"hello": "world"}'
    assert run.requests == 1


@pytest.mark.usefixtures("_env")
async def test_5xx_is_retried(sqlite_store: Store, target: tuple[Target, str]) -> None:
    server, base = target
    server.failures_left = 2
    run = await sqlite_store.get_run(await run_once(sqlite_store, http_job(f"{base}/flaky")))
    assert run.state is RunState.SUCCEEDED
    assert run.attempt == 3
    assert [s["headers"]["Idempotency-Key"] for s in server.seen] == [run.idempotency_key] * 3
    assert run.requests == 3  # every attempt's request counts towards usage
    assert run.cpu_ms is None  # a light run's CPU is its worker's, not measured per run


@pytest.mark.usefixtures("_env")
async def test_429_honours_retry_after(sqlite_store: Store, target: tuple[Target, str]) -> None:
    server, base = target
    server.failures_left = 1
    run_id = await run_once(sqlite_store, http_job(f"{base}/limited"))
    run = await sqlite_store.get_run(run_id)
    assert run.state is RunState.SUCCEEDED
    assert run.started_at is not None
    assert run.attempt == 2
    assert run.started_at - run.enqueued_at >= timedelta(seconds=1)


@pytest.mark.usefixtures("_env")
async def test_4xx_is_not_retried_and_keeps_status(
    sqlite_store: Store, target: tuple[Target, str]
) -> None:
    _, base = target
    run = await sqlite_store.get_run(await run_once(sqlite_store, http_job(f"{base}/bad")))
    assert run.state is RunState.FAILED
    assert run.attempt == 1
    assert run.error is not None
    assert run.error.reason == "http_status"
    assert run.error.message.startswith("HTTP 400: xxx")
    assert len(run.error.message) < 300


@pytest.mark.usefixtures("_env")
async def test_deadline_per_attempt(sqlite_store: Store, target: tuple[Target, str]) -> None:
    _, base = target
    job = http_job(f"{base}/slow", timeout="300ms", max_attempts=1)
    run = await sqlite_store.get_run(await run_once(sqlite_store, job))
    assert run.state is RunState.TIMED_OUT


@pytest.mark.usefixtures("_env")
async def test_connection_refused_is_retried_then_dead(sqlite_store: Store) -> None:
    job = http_job("http://127.0.0.1:9/nothing", max_attempts=2)
    run = await sqlite_store.get_run(await run_once(sqlite_store, job))
    assert run.state is RunState.DEAD
    assert run.attempt == 2
    assert run.error is not None
    assert "Connect" in run.error.type


async def test_missing_env_var_is_named_not_leaked(sqlite_store: Store) -> None:
    job = http_job("http://127.0.0.1:9/x", max_attempts=1)
    run = await sqlite_store.get_run(await run_once(sqlite_store, job))
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert "CRONLINK_TEST_SECRET is not set" in run.error.message


@pytest.mark.usefixtures("_env")
async def test_heavy_tier_http_target(sqlite_store: Store, target: tuple[Target, str]) -> None:
    _, base = target
    job = http_job(f"{base}/ok", tier="heavy")
    assert job.tier is Tier.HEAVY
    run = await sqlite_store.get_run(await run_once(sqlite_store, job))
    assert run.state is RunState.SUCCEEDED


@pytest.mark.usefixtures("_env")
async def test_secrets_never_reach_the_stored_run(
    sqlite_store: Store, target: tuple[Target, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, base = target
    echo = await sqlite_store.get_run(
        await run_once(sqlite_store, http_job(f"{base}/echo", max_attempts=1))
    )
    assert echo.error is not None
    assert "you sent Bearer ***" in echo.error.message
    # A secret in the URL of a refused connection: the error keeps its class, not the text.
    job = build_job(
        name="call",
        schedules=[],
        target=HttpTarget(url="http://127.0.0.1:9/?key=${CRONLINK_TEST_SECRET}"),
        max_attempts=1,
    )
    refused = await sqlite_store.get_run(await run_once(sqlite_store, job))
    assert refused.error is not None
    stored = [echo.error.message, echo.error.traceback, refused.error.message,
              refused.error.traceback, refused.error.type, caplog.text]  # fmt: skip
    assert not [text for text in stored if "s3cret" in text]
