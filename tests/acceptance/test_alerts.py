"""Alerts end to end: scripted failures and recoveries reach a real SMTP server and a real
webhook on 127.0.0.1 exactly once each; the rate limit summarises; evaluators sharing a
database send each message once; no secret reaches a message, a log line or the output."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cronlink.app import App
from cronlink.builtin_jobs import alert_watch
from cronlink.cli import cli
from cronlink.compose import build_app
from cronlink.config import Settings
from cronlink.config_models import AlertsModel, UsageModel
from cronlink.jobs import build_job, new_run
from cronlink.observe.alert_job import WATCH_ALERTS, policy_from
from cronlink.observe.alerts import evaluate
from cronlink.observe.notify import Notifier
from cronlink.observe.usage import measured
from cronlink.progress import Progress, silent
from cronlink.records.runs import Reason, RunState, Tier
from cronlink.runtime import run_roles
from cronlink.store import Store, store_for
from cronlink.store.sqlite import SQLiteStore
from tests.acceptance.alert_kit import HOOK_PASSWORD, Receivers, end_run, free_port, receivers
from tests.acceptance.worker_kit import finished, running_worker
from tests.store.test_contract import tick

T0 = datetime(2025, 6, 2, 9, 0, 30, tzinfo=UTC)
RUN_CANARY = "run-error-canary-77ab"
JOBS = App()
JOBS.add(build_job(name="sync", schedules=[], timeout="10s", max_attempts=1))
JOBS.add(build_job(name="report", schedules=[], timeout="10s", max_attempts=3))


@dataclass(frozen=True)
class Stopped:
    """A clock that stands still at `at`."""

    at: datetime

    def now(self) -> datetime:
        return self.at


@pytest.fixture
def channels() -> Iterator[Receivers]:
    with receivers() as got:
        yield got


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


async def test_failures_and_recoveries_reach_both_channels_once_each(
    sqlite_store: Store, channels: Receivers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = AlertsModel(urls=[channels.mail_url, channels.hook_url], label="test")
    policy, notifier = policy_from(model), Notifier(model.urls)

    async def at(n: int) -> None:
        await evaluate(sqlite_store, JOBS.jobs, policy, notifier, minutes(n))

    for _ in range(3):
        await end_run(sqlite_store, "sync", RunState.FAILED, minutes(0), why=RUN_CANARY)
    await at(0)
    await at(1)  # nothing new: no second message
    await end_run(sqlite_store, "sync", RunState.FAILED, minutes(2), why=RUN_CANARY)
    await at(2)  # failing still: no second message either
    await end_run(sqlite_store, "report", RunState.DEAD, minutes(3), why=RUN_CANARY)
    await at(3)
    await end_run(sqlite_store, "sync", RunState.SUCCEEDED, minutes(4))
    await at(4)
    await at(5)
    await end_run(sqlite_store, "report", RunState.SUCCEEDED, minutes(6))
    await at(6)

    expected = [
        "[test] FIRING: job sync is failing",
        "[test] FIRING: a run of report is dead after its retries",
        "[test] resolved: job sync is failing",
        "[test] resolved: a run of report is dead after its retries",
    ]
    assert channels.mail_titles() == expected
    assert channels.hook_titles() == expected
    assert "The last 3 runs of job sync failed" in channels.hooks[0]["message"]
    assert "cleared at 2025-06-02T09:04:30+00:00 (after 4m)" in channels.hooks[2]["message"]
    assert [h["type"] for h in channels.hooks] == ["failure", "failure", "success", "success"]
    assert channels.hook_auth[0].startswith("Basic ")  # the password went where it belongs
    for secret in (RUN_CANARY, HOOK_PASSWORD):
        assert secret not in channels.everything()
        assert secret not in caplog.text
    assert await sqlite_store.alerts.list() == []


async def test_the_rate_limit_summarises_the_excess_and_holds_what_comes_after(
    sqlite_store: Store, channels: Receivers
) -> None:
    jobs = App()
    for i in range(5):
        jobs.add(build_job(name=f"j{i}", schedules=[], max_attempts=1))
        await end_run(sqlite_store, f"j{i}", RunState.FAILED, T0)
    model = AlertsModel(
        urls=[channels.hook_url], failing_after=1, max_messages=3, window=timedelta(hours=1)
    )
    policy, notifier = policy_from(model), Notifier(model.urls)

    await evaluate(sqlite_store, jobs.jobs, policy, notifier, T0)
    assert channels.hook_titles() == [
        "[cronlink] FIRING: job j0 is failing",
        "[cronlink] FIRING: job j1 is failing",
        "[cronlink] 3 more alerts (at most 3 messages per 1h)",
    ]
    assert "- FIRING job-failing:j4: job j4 is failing" in channels.hooks[2]["message"]
    for i in range(5):
        await end_run(sqlite_store, f"j{i}", RunState.SUCCEEDED, minutes(10))
    done = await evaluate(sqlite_store, jobs.jobs, policy, notifier, minutes(10))
    assert (len(done.resolved), done.delivery.sent, done.delivery.held) == (5, 0, 5)  # full
    assert len(channels.hooks) == 3
    await evaluate(sqlite_store, jobs.jobs, policy, notifier, T0 + timedelta(hours=1))
    assert channels.hook_titles()[3:] == [
        "[cronlink] resolved: job j0 is failing",
        "[cronlink] resolved: job j1 is failing",
        "[cronlink] 3 more alerts (at most 3 messages per 1h)",
    ]


async def test_a_message_no_channel_took_is_sent_at_the_next_evaluation(
    sqlite_store: Store, channels: Receivers
) -> None:
    for _ in range(3):
        await end_run(sqlite_store, "sync", RunState.FAILED, T0)
    model = AlertsModel(urls=[channels.hook_url])
    policy, notifier = policy_from(model), Notifier(model.urls)
    channels.refuse = True
    first = await evaluate(sqlite_store, JOBS.jobs, policy, notifier, T0)
    assert (first.started, first.delivery.sent, first.delivery.held) == (["job-failing:sync"], 0, 1)
    assert channels.hooks == []
    channels.refuse = False
    await evaluate(sqlite_store, JOBS.jobs, policy, notifier, minutes(1))
    await evaluate(sqlite_store, JOBS.jobs, policy, notifier, minutes(2))
    assert channels.hook_titles() == ["[cronlink] FIRING: job sync is failing"]


async def test_two_evaluators_at_once_send_each_message_once(
    any_url: str, channels: Receivers
) -> None:
    stores = [store_for(any_url) for _ in range(2)]
    for opened in stores:
        await opened.open()
    try:
        jobs = App()
        for i in range(4):
            jobs.add(build_job(name=f"j{i}", schedules=[], max_attempts=1))
            await end_run(stores[0], f"j{i}", RunState.FAILED, T0)
        model = AlertsModel(urls=[channels.hook_url, channels.mail_url], failing_after=1)
        policy, notifier = policy_from(model), Notifier(model.urls)

        async def both(at: datetime) -> None:
            await asyncio.gather(*(evaluate(s, jobs.jobs, policy, notifier, at) for s in stores))

        await both(T0)
        for i in range(4):
            await end_run(stores[1], f"j{i}", RunState.SUCCEEDED, minutes(1))
        await both(minutes(1))
        await both(minutes(2))
    finally:
        for opened in stores:
            await opened.close()
    titles = sorted(channels.hook_titles())
    assert titles == sorted(
        [f"[cronlink] FIRING: job j{i} is failing" for i in range(4)]
        + [f"[cronlink] resolved: job j{i} is failing" for i in range(4)]
    )
    assert sorted(channels.mail_titles()) == titles


async def test_watch_alerts_runs_on_the_workers_store_at_the_workers_time(
    tmp_path: Path, sqlite_store: Store, channels: Receivers
) -> None:
    assert WATCH_ALERTS not in build_app(Settings(database_url=sqlite_store.url)).jobs
    # No store opens at this URL: a job that opened its own would fail.
    nowhere = f"sqlite:///{tmp_path / 'absent' / 'cronlink.db'}"
    settings = Settings(database_url=nowhere, alerts=AlertsModel(urls=[channels.hook_url]))
    app = build_app(settings)
    app.add(build_job(name="sync", schedules=[], max_attempts=1))  # added later: watched too
    watch = app.get(WATCH_ALERTS)
    assert (watch.tier, [s.cron.source for s in watch.schedules]) == (Tier.LIGHT, ["* * * * *"])
    for _ in range(3):
        await end_run(sqlite_store, "sync", RunState.FAILED, T0, why=RUN_CANARY)
    alerts = alert_watch(settings, sqlite_store, app.jobs)
    clock = Stopped(minutes(7))
    async with running_worker(sqlite_store, Tier.LIGHT, app.jobs, clock=clock, alerts=alerts):
        run_id = await sqlite_store.enqueue(new_run(watch, Reason.MANUAL), clock.now())
        run = await finished(sqlite_store, run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    assert channels.hook_titles() == ["[cronlink] FIRING: job sync is failing"]
    [alert] = await sqlite_store.alerts.list()
    assert alert.since == minutes(7)  # the worker's time, not the wall clock's


async def test_watch_alerts_without_its_watch_says_what_is_missing(sqlite_store: Store) -> None:
    settings = Settings(database_url=sqlite_store.url, alerts=AlertsModel(urls=["json://x/y"]))
    app = build_app(settings)
    async with running_worker(sqlite_store, Tier.LIGHT, app.jobs):
        now = datetime.now(UTC)
        run_id = await sqlite_store.enqueue(new_run(app.get(WATCH_ALERTS), Reason.MANUAL), now)
        run = await finished(sqlite_store, run_id)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert "has no alerts here: they need an [alerts] section" in run.error.message


async def test_the_roles_hand_watch_alerts_the_store_they_hold(
    sqlite_store: Store, channels: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=sqlite_store.url, alerts=AlertsModel(urls=[channels.hook_url]))
    app = build_app(settings)
    app.add(build_job(name="sync", schedules=[], max_attempts=1))
    now = datetime.now(UTC)
    for _ in range(3):
        await end_run(sqlite_store, "sync", RunState.FAILED, now)
    opened: list[str] = []
    open_store = SQLiteStore.open

    async def counted(
        self: SQLiteStore, *, migrate: bool = True, progress: Progress = silent
    ) -> None:
        opened.append(self.url)
        await open_store(self, migrate=migrate, progress=progress)

    monkeypatch.setattr(SQLiteStore, "open", counted)
    stop = asyncio.Event()
    roles = asyncio.create_task(
        run_roles(settings, app, scheduler=False, tiers=(Tier.LIGHT,), stop=stop)
    )
    runs = []
    try:
        for n in range(2):
            if n == 1:
                before = len(opened)  # the roles are running: their store is open
            run_id = await sqlite_store.enqueue(new_run(app.get(WATCH_ALERTS), Reason.MANUAL), now)
            runs.append(await finished(sqlite_store, run_id))
    finally:
        stop.set()
        await roles
    assert [r.state for r in runs] == [RunState.SUCCEEDED] * 2, runs[-1].error
    assert len(opened) == before
    assert channels.hook_titles() == ["[cronlink] FIRING: job sync is failing"]


def _config(tmp_path: Path, urls: list[str]) -> Path:
    listed = ", ".join(f'"{u}"' for u in urls)
    path = tmp_path / "cronlink.toml"
    path.write_text(
        f'database_url = "sqlite:///{tmp_path / "c.db"}"\n[alerts]\nurls = [{listed}]\n'
    )
    return path


def test_alerts_test_names_the_channel_that_failed_redacted(
    tmp_path: Path, channels: Receivers
) -> None:
    dead_end = f"json://ops:{HOOK_PASSWORD}@127.0.0.1:{free_port()}/hook"
    config = _config(tmp_path, [channels.hook_url, dead_end])
    result = CliRunner().invoke(cli, ["alerts", "test", "--config", str(config)])
    assert result.exit_code == 1
    assert "channel #1 (json://ops:****@127.0.0.1:" in result.output
    assert "#2 (json://ops:****@127.0.0.1:" in result.output.splitlines()[-1]
    assert HOOK_PASSWORD not in result.output
    assert channels.hook_titles() == ["[cronlink] test message"]
    good = _config(tmp_path, [channels.hook_url])
    ok = CliRunner().invoke(cli, ["alerts", "test", "--config", str(good)])
    assert ok.exit_code == 0, ok.output


def test_alerts_list_shows_the_firing_ones(tmp_path: Path, channels: Receivers) -> None:
    config = _config(tmp_path, [channels.hook_url])
    url = f"sqlite:///{tmp_path / 'c.db'}"

    async def fire() -> None:
        store = store_for(url)
        await store.open()
        try:
            for _ in range(3):
                await end_run(store, "sync", RunState.FAILED, T0)
            model = AlertsModel(urls=[channels.hook_url])
            await evaluate(store, JOBS.jobs, policy_from(model), Notifier(model.urls), T0)
        finally:
            await store.close()

    asyncio.run(fire())
    listed = CliRunner().invoke(cli, ["alerts", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "job-failing:sync" in listed.output
    assert "job sync is failing" in listed.output
    as_json = CliRunner().invoke(cli, ["alerts", "list", "--json", "--config", str(config)])
    [shown] = json.loads(as_json.output)
    assert (shown["key"], shown["state"], shown["owed"]) == ("job-failing:sync", "firing", None)


def test_a_bad_alert_url_names_its_key_but_never_shows_it(tmp_path: Path) -> None:
    config = _config(tmp_path, [f"nosuch://ops:{HOOK_PASSWORD}@example.com/x"])
    result = CliRunner().invoke(cli, ["alerts", "list", "--config", str(config)])
    assert result.exit_code == 2
    assert "alerts.urls[0]: not a URL apprise can send to (scheme 'nosuch')" in result.output
    assert HOOK_PASSWORD not in result.output


def test_a_url_reads_its_secret_from_the_environment_when_sending(
    tmp_path: Path, channels: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = f"json://ops:${{ALERT_HOOK_PASSWORD}}@127.0.0.1:{channels.hook_port}/hook"
    config = _config(tmp_path, [template])
    unset = CliRunner().invoke(cli, ["alerts", "test", "--config", str(config)])
    assert unset.exit_code == 1
    assert "environment variable ALERT_HOOK_PASSWORD is not set" in unset.output
    monkeypatch.setenv("ALERT_HOOK_PASSWORD", HOOK_PASSWORD)
    result = CliRunner().invoke(cli, ["alerts", "test", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "${ALERT_HOOK_PASSWORD}" in result.output
    assert HOOK_PASSWORD not in result.output
    [auth] = channels.hook_auth
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == f"ops:{HOOK_PASSWORD}"


async def test_repeat_reminds_of_an_alert_still_firing(
    sqlite_store: Store, channels: Receivers
) -> None:
    for _ in range(3):
        await end_run(sqlite_store, "sync", RunState.FAILED, T0)
    model = AlertsModel(urls=[channels.hook_url], repeat=timedelta(hours=1))
    policy, notifier = policy_from(model), Notifier(model.urls)
    for n in (0, 30, 60, 61, 62, 90):
        await evaluate(sqlite_store, JOBS.jobs, policy, notifier, minutes(n))
    assert channels.hook_titles() == [
        "[cronlink] FIRING: job sync is failing",
        "[cronlink] still firing: job sync is failing",
    ]


async def test_the_dead_mans_switch_fires_when_a_schedule_goes_silent(
    sqlite_store: Store, channels: Receivers
) -> None:
    hourly = App()
    hourly.add(build_job(name="nightly", schedules=["0 * * * *"], max_attempts=1))
    top = T0.replace(second=0)
    # Recorded missed (the scheduler was behind): the switch is armed from that instant.
    await sqlite_store.record_ticks([tick("nightly", top, missed=True)], [], top)
    model = AlertsModel(urls=[channels.mail_url], grace=timedelta(minutes=5))
    policy, notifier = policy_from(model), Notifier(model.urls)
    await evaluate(sqlite_store, hourly.jobs, policy, notifier, top + timedelta(minutes=5))
    assert channels.mails == []
    await evaluate(sqlite_store, hourly.jobs, policy, notifier, top + timedelta(minutes=6))
    await end_run(sqlite_store, "nightly", RunState.SUCCEEDED, top + timedelta(minutes=7))
    await evaluate(sqlite_store, hourly.jobs, policy, notifier, top + timedelta(minutes=8))
    # The next instant (10:00) plus the grace: silent again from 10:05 on.
    await evaluate(sqlite_store, hourly.jobs, policy, notifier, top + timedelta(minutes=65))
    await evaluate(sqlite_store, hourly.jobs, policy, notifier, top + timedelta(minutes=66))
    assert channels.mail_titles() == [
        "[cronlink] FIRING: job nightly has not succeeded on schedule",
        "[cronlink] resolved: job nightly has not succeeded on schedule",
        "[cronlink] FIRING: job nightly has not succeeded on schedule",
    ]


def test_alerts_check_evaluates_once_from_the_command_line(
    tmp_path: Path, channels: Receivers
) -> None:
    config = _config(tmp_path, [channels.hook_url])
    url = f"sqlite:///{tmp_path / 'c.db'}"

    async def fail_thrice() -> None:
        store = store_for(url)
        await store.open()
        try:
            for _ in range(3):
                await end_run(store, "watch-alerts", RunState.FAILED, T0)
        finally:
            await store.close()

    asyncio.run(fail_thrice())
    for _ in range(2):
        checked = CliRunner().invoke(cli, ["alerts", "check", "--config", str(config)])
        assert checked.exit_code == 0, checked.output
    assert "0 started" in checked.output
    assert channels.hook_titles() == ["[cronlink] FIRING: job watch-alerts is failing"]
    unconfigured = tmp_path / "bare.toml"
    unconfigured.write_text("")
    refused = CliRunner().invoke(cli, ["alerts", "check", "--config", str(unconfigured)])
    assert refused.exit_code == 2
    assert "alerts are not configured: add an [alerts] section" in refused.output


async def test_usage_near_a_quota_fires_and_recovers(
    sqlite_store: Store, channels: Receivers
) -> None:
    now = datetime.now(UTC)
    for _ in range(9):
        await end_run(sqlite_store, "sync", RunState.SUCCEEDED, now)
    model = AlertsModel(urls=[channels.hook_url], rules=["usage-quota"])
    policy, notifier = policy_from(model), Notifier(model.urls)

    async def with_quota(light_per_day: int) -> None:
        quotas = UsageModel(light_per_day=light_per_day)
        usage = await measured(sqlite_store, JOBS.jobs, quotas, now)
        await evaluate(sqlite_store, JOBS.jobs, policy, notifier, now, usage)

    await with_quota(10)  # 9 of 10: past 80%
    await with_quota(10)
    await with_quota(1_000)
    assert channels.hook_titles() == [
        "[cronlink] FIRING: usage nears the light quota",
        "[cronlink] resolved: usage nears the light quota",
    ]
    assert "9 light invocations on the busiest day, 90% of 10/day" in channels.hooks[0]["message"]
