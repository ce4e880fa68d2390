"""A secret quoted back by a peer, in any form (URL-encoded, `+` for a space, lower-case
hex, JSON-escaped, base64, a Basic credential), is masked wherever cronlink keeps or shows
text: a target's run record, a handler's error and log, a step's output and error, a
provider's error, a process log line. The peer is a real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from cronlink.app import App
from cronlink.connections.providers import Providers
from cronlink.connections.tokens import refresh
from cronlink.context import RunContext
from cronlink.errors import RefreshError
from cronlink.jobs import HttpTarget, build_job, new_run
from cronlink.observe import logs
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.store import Store
from tests.acceptance.automation_kit import AutoKit, auto, dead_letter
from tests.acceptance.echo_kit import echo_server, leaks
from tests.acceptance.sandbox_kit import kit
from tests.acceptance.test_http_target import run_once
from tests.acceptance.test_logs import restored
from tests.acceptance.worker_kit import finished, running_worker

__all__ = ["auto", "kit", "restored"]

API_KEY = "p4ss|w0rd{2024} \u00e9+/"
"""A target's secret with characters every encoder treats differently."""
CRON = "p4ss|cron{2024} secret+/x"
CLIENT_SECRET = "p4ss|client{2024} s+/"


def _clean(text: str | None, *secrets: str) -> None:
    assert text is not None
    # A server that decodes a query reads a `+` as a space: it quotes that back too.
    variants = [v for s in secrets for v in (s, s.replace("+", " "))]
    assert leaks(text, *variants) == [], text
    assert "p4ss" not in text, text


async def test_a_targets_run_record_never_holds_its_secret(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_API_KEY", API_KEY)
    async with echo_server() as base:
        for status in (200, 500):
            job = build_job(
                name="call", schedules=[], max_attempts=1,
                target=HttpTarget(url=f"{base}/echo/{status}?key=${{MY_API_KEY}}"),
            )  # fmt: skip
            run = await sqlite_store.get_run(await run_once(sqlite_store, job))
            if status == 200:
                assert run.state is RunState.SUCCEEDED
                assert run.result is not None
                assert "basic=***" in run.result  # it did echo
                _clean(run.result, API_KEY)
            else:
                assert run.state is RunState.FAILED
                assert run.error is not None
                _clean(run.error.message + run.error.traceback, API_KEY)


async def test_a_handlers_error_and_log_never_hold_a_configured_secret(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRON_SECRET", CRON)
    handlers = App()

    @handlers.job(name="leaky", max_attempts=1)
    async def leaky(ctx: RunContext) -> None:
        async with aiohttp.ClientSession() as http:
            url = f"{ctx.payload}/echo/200"
            async with http.get(url, params={"key": CRON}) as answer:
                said = await answer.text()
        ctx.log.info("the API said %s", said)
        raise RuntimeError(said)

    async with echo_server() as base:
        run_id = await sqlite_store.enqueue(
            new_run(handlers.get("leaky"), Reason.API, payload=base), datetime.now(UTC)
        )
        async with running_worker(sqlite_store, Tier.LIGHT, handlers.jobs):
            run = await finished(sqlite_store, run_id)
    assert run.error is not None
    assert "basic=***" in run.error.message
    _clean(run.error.message + run.error.traceback, CRON)
    lines = await sqlite_store.run_logs(run_id)
    assert lines
    _clean(json.dumps([line[3] for line in lines], ensure_ascii=False), CRON)


@pytest.mark.usefixtures("restored")
async def test_a_log_line_never_holds_a_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CRON_SECRET", f"{CRON},another-secret-0123456789")
    for style in ("json", "text"):
        logging.getLogger().handlers[:] = []
        logs.configure(verbose=False, style=style)
        async with (
            echo_server() as base,
            aiohttp.ClientSession() as http,
            http.get(f"{base}/echo/200", params={"key": CRON}) as answer,
        ):
            said = await answer.text()
        logging.getLogger("cronlink.test").warning("the peer said %s", said)
        err = capsys.readouterr().err
        assert "basic=***" in err
        _clean(err, CRON)


async def test_a_providers_error_never_holds_the_client_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CRONLINK_SANDBOX_CLIENT_SECRET", CLIENT_SECRET)
    async with echo_server() as base, aiohttp.ClientSession() as http:
        monkeypatch.setenv("CRONLINK_SANDBOX_URL", base)
        provider = Providers.load().get("sandbox")
        with pytest.raises(RefreshError) as refused:
            await refresh(http, provider, "p4ss-refresh-token", datetime.now(UTC))
    said = str(refused.value)
    assert "invalid_client" in said
    assert "base64=***" in said
    _clean(said, CLIENT_SECRET, "p4ss-refresh-token")


async def test_a_steps_output_and_error_never_hold_the_token(auto: AutoKit) -> None:
    async with echo_server() as base:
        cid = await auto.kit.connect()
        added = await auto.automations.add(
            name="echoes", connection_id=cid, trigger="new_item", start="beginning",
            steps=[
                {"name": "echo", "call": "tests.acceptance.automation_steps:echo_token"},
                {"name": "fail", "call": "tests.acceptance.automation_steps:echo_token_fails"},
            ],
            params={"trace": str(auto.trace), "echo": base},
        )  # fmt: skip
        event = await dead_letter(auto, added.id)
    tokens = [t for t in auto.kit.sandbox.grants.access]
    output: Any = event.outputs["echo"]
    assert "basic=***" in output["said"]
    _clean(json.dumps(output, ensure_ascii=False), *tokens)
    _clean(event.error, *tokens)


@pytest.mark.usefixtures("restored")
def test_a_short_configured_secret_is_masked_in_logs_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A short secret is refused at start, but the lines logged before say nothing of it."""
    monkeypatch.setenv("CRON_SECRET", "sh0rt")
    logging.getLogger().handlers[:] = []
    logs.configure(verbose=False, style="json")
    logging.getLogger("cronlink.test").warning("configured with sh0rt")
    assert "sh0rt" not in capsys.readouterr().err
