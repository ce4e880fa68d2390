"""Commands about jobs and runs: jobs, trigger, pause, resume, runs, test-scheduled."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink import control
from cronlink.cli.options import (
    parse_instant,
    print_json,
    run_async,
    settings_from,
    settings_options,
)
from cronlink.cli.show import console, cut, run_dict, when
from cronlink.compose import build_app
from cronlink.cron import parse
from cronlink.records.runs import RunState, Tier
from cronlink.runtime import open_store, run_roles

if TYPE_CHECKING:
    from pathlib import Path

    from cronlink.records.runs import Run


@click.command()
@click.option("--json", "as_json", is_flag=True)
@settings_options
def jobs(
    as_json: bool, config_path: Path | None, database_url: str | None, app_path: str | None
) -> None:
    """Every job: schedules, next fire time, last state."""
    settings = settings_from(config_path, database_url, app_path)
    app = build_app(settings)

    async def go() -> list[control.JobStatus]:
        store = await open_store(settings)
        try:
            return await control.job_statuses(store, app, datetime.now(UTC))
        finally:
            await store.close()

    statuses = run_async(go())
    if as_json:
        print_json([dataclasses.asdict(s) for s in statuses])
        return
    table = Table("job", "tier", "schedule", "next fire", "last", title="jobs")
    for s in statuses:
        schedules = "\n".join(f"{x['cron']} ({x['timezone']}): {x['explain']}" for x in s.schedules)
        last = f"{s.last_state} (run {s.last_run_id})" if s.last_state else ""
        table.add_row(
            s.name + (" [paused]" if s.paused else ""),
            s.tier,
            schedules or "on demand",
            when(s.next_fire),
            last,
        )
    console.print(table)


@click.command()
@click.argument("job")
@click.option("--payload", help="JSON handed to the handler as ctx.payload.")
@click.option(
    "--wait", is_flag=True, help="Wait for the run to finish; exit 1 unless it succeeded."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=3600,
    show_default=True,
    help="With --wait: stop waiting after this many seconds (exit 1; the run goes on).",
)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def trigger(
    job: str,
    payload: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """Queue a run of JOB now (a worker must be running; `cronlink run` is one)."""
    data = _payload(payload)
    settings = settings_from(config_path, database_url, app_path)
    app = build_app(settings)

    async def go() -> tuple[int, Run | None]:
        store = await open_store(settings)
        try:
            run_id = await control.trigger(store, app, job, data, datetime.now(UTC))
            if not wait:
                return run_id, None
            try:
                async with asyncio.timeout(timeout):
                    return run_id, await control.wait_finished(store, run_id)
            except TimeoutError:
                return run_id, await store.get_run(run_id)
        finally:
            await store.close()

    run_id, run = run_async(go())
    if as_json:
        print_json(run_dict(run) if run else {"run_id": run_id})
    elif run is None:
        click.echo(f"queued run {run_id} of {job}")
    else:
        click.echo(
            f"run {run_id} of {job}: {run.state.value}"
            + (f" ({run.error.message})" if run.error else "")
        )
    if run is not None and run.state is not RunState.SUCCEEDED:
        sys.exit(1)


def _pause_command(name: str, paused: bool) -> click.Command:
    @click.command(name)
    @click.argument("job")
    @settings_options
    def command(
        job: str, config_path: Path | None, database_url: str | None, app_path: str | None
    ) -> None:
        settings = settings_from(config_path, database_url, app_path)
        app = build_app(settings)
        app.get(job)

        async def go() -> None:
            store = await open_store(settings)
            try:
                await store.set_paused(job, paused, datetime.now(UTC))
            finally:
                await store.close()

        run_async(go())
        click.echo(f"{job} {'paused' if paused else 'resumed'}")

    command.help = (
        f"{name.capitalize()} JOB's schedules (its instants are recorded as skipped)."
        if paused
        else "Resume JOB's schedules."
    )
    return command


pause = _pause_command("pause", True)
resume = _pause_command("resume", False)


@click.command()
@click.option("--job")
@click.option("--state", type=click.Choice([s.value for s in RunState]))
@click.option("--since", help="ISO 8601 instant; also lists skipped and missed instants.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@settings_options
def runs(
    job: str | None,
    state: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """Runs, newest first; with --since, every scheduled instant's fate."""
    settings = settings_from(config_path, database_url, app_path)
    start = parse_instant(since, "--since") if since else None

    async def go() -> list[control.HistoryEntry]:
        store = await open_store(settings)
        try:
            chosen = RunState(state) if state else None
            return await control.history(store, job, chosen, start, limit)
        finally:
            await store.close()

    entries = run_async(go())
    if job is not None and not entries:
        build_app(settings).get(job)  # an unknown name is an error suggesting close ones
    if as_json:
        print_json(
            [
                {
                    "at": e.at,
                    "job": e.job,
                    "fate": e.fate,
                    "run": run_dict(e.run) if e.run else None,
                }
                for e in entries
            ]
        )
        return
    table = Table("at", "job", "run", "state", "attempt", "duration", "error", title="runs")
    for e in entries:
        r = e.run
        table.add_row(
            when(e.at),
            e.job,
            str(r.id) if r else "",
            r.state.value if r else e.fate,
            f"{r.attempt}/{r.max_attempts}" if r else "",
            f"{r.duration_ms} ms" if r and r.duration_ms is not None else "",
            cut(f"{r.error.type}: {r.error.message}") if r and r.error else "",
        )
    console.print(table)


@click.command("test-scheduled")
@click.argument("expression")
@settings_options
def test_scheduled(
    expression: str, config_path: Path | None, database_url: str | None, app_path: str | None
) -> None:
    """Run every job bound to cron EXPRESSION once, now, in this process."""
    fields = parse(expression).fields
    settings = settings_from(config_path, database_url, app_path)
    app = build_app(settings)
    bound = [j.name for j in app.jobs.values() if any(s.cron.fields == fields for s in j.schedules)]
    if not bound:
        click.echo(f"error: no job is scheduled at {expression!r}", err=True)
        sys.exit(1)

    async def go() -> list[Run]:
        store = await open_store(settings)
        try:
            ids = [
                await control.trigger(store, app, name, None, datetime.now(UTC)) for name in bound
            ]
        finally:
            await store.close()
        stop = asyncio.Event()
        runner = asyncio.create_task(
            run_roles(settings, app, scheduler=False, tiers=tuple(Tier), stop=stop)
        )
        store = await open_store(settings)
        try:
            done = [await control.wait_finished(store, run_id) for run_id in ids]
        finally:
            stop.set()
            await runner
            await store.close()
        return done

    results = run_async(go())
    for run in results:
        detail = run.result or (f"{run.error.type}: {run.error.message}" if run.error else "")
        click.echo(f"{run.job}: {run.state.value} (run {run.id}) {detail}".rstrip())
    if any(r.state is not RunState.SUCCEEDED for r in results):
        sys.exit(1)


def _payload(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON ({error})", param_hint="--payload") from None
