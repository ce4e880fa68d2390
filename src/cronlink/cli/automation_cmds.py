"""`cronlink automations …`: create automations and operate them and their events."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tomllib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink.cli.options import print_json, run_async, settings_from, settings_options
from cronlink.cli.progress import bars
from cronlink.cli.show import console, cut, when
from cronlink.compose import build_app
from cronlink.durations import parse_duration
from cronlink.plurals import counted
from cronlink.records.automations import EventState
from cronlink.services import automations_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cronlink.automations.service import Automations
    from cronlink.config import Settings
    from cronlink.progress import Progress
    from cronlink.records.automations import Automation, AutomationEvent


POLL_EVERY = 0.5
"""Seconds between looks at an event `automations run --wait` waits for."""


def _call(settings: Settings, fn: Callable[[Automations], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        async with automations_for(settings, build_app(settings)) as automations:
            return await fn(automations)

    return run_async(go())


def _settings(options: dict[str, Any]) -> Settings:
    return settings_from(options["config_path"], options["database_url"], options["app_path"])


def _id(text: str) -> int | str:
    """An automation by id (digits) or by name."""
    return int(text) if text.isdigit() else text


@click.group()
def automations() -> None:
    """Automations: a trigger (or a schedule) on a connection, and the steps run on each
    new event."""


@automations.command()
@click.option("--connection", "connection_id", type=int, required=True)
@click.option(
    "--trigger", help="A trigger of the connection's provider (see `connections providers`)."
)
@click.option("--schedule", help="A cron expression (UTC), for an automation with no trigger.")
@click.option("--every", default="1m", show_default=True, help="How often the trigger is polled.")
@click.option(
    "--steps",
    "steps_file",
    type=click.Path(path_type=Path),
    required=True,
    help="TOML ([[steps]]) or JSON file of the steps.",
)
@click.option("--name", help="A unique name (default: TRIGGER-CONNECTION).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A parameter for the trigger's request and the steps' templates.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Events processed at once (1: one at a time, in order).",
)
@click.option(
    "--start",
    default="now",
    show_default=True,
    help="now (items already there never fire), beginning, or an ISO instant.",
)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def add(
    connection_id: int, trigger: str | None, schedule: str | None, every: str,
    steps_file: Path, name: str | None, params: tuple[str, ...], concurrency: int, start: str,
    as_json: bool, **options: Any,
) -> None:  # fmt: skip
    """Create an automation."""
    steps = _read_steps(steps_file)
    chosen = name or f"{trigger or 'scheduled'}-{connection_id}"
    try:
        interval = parse_duration(every)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--every") from None
    added = _call(
        _settings(options),
        lambda a: a.add(
            name=chosen, connection_id=connection_id, trigger=trigger, schedule=schedule,
            every=interval, steps=steps, params=_params(params), concurrency=concurrency,
            start=start,
        ),
    )  # fmt: skip
    if as_json:
        print_json(dataclasses.asdict(added))
    else:
        click.echo(
            f"automation {added.id} ({added.name}) added; next poll {when(added.next_poll_at)}"
        )


def _read_steps(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {path}: {error.strerror}", param_hint="--steps"
        ) from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(
            f"{path} is not valid {path.suffix[1:].upper() or 'TOML'} ({error})",
            param_hint="--steps",
        ) from None
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise click.BadParameter(
            f"{path} must hold a list of steps ([[steps]] in TOML)", param_hint="--steps"
        )
    return steps


def _params(pairs: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} must look like KEY=VALUE", param_hint="--param")
        found[key] = value
    return found


@automations.command("list")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def list_(as_json: bool, **options: Any) -> None:
    """Automations, with their last poll and watermark."""
    found: list[Automation] = _call(_settings(options), lambda a: a.find(limit=1000))
    if as_json:
        print_json([dataclasses.asdict(x) for x in found])
        return
    table = Table("id", "name", "connection", "trigger", "state", "last poll", "watermark",
                  "failures", "stalled")  # fmt: skip
    for x in found:
        table.add_row(
            str(x.id),
            x.name,
            str(x.connection_id),
            x.trigger or f"cron {x.schedule}",
            x.state.value,
            when(x.last_success_at),
            str(x.cursor.watermark or ""),
            str(x.poll_failures),
            "yes" if x.stalled else "",
        )
    console.print(table)


def _one(
    name: str, doc: str, act: Callable[[Automations, int | str], Awaitable[Automation]]
) -> None:
    @automations.command(name, help=doc)
    @click.argument("automation")
    @click.option("--json", "as_json", is_flag=True)
    @settings_options
    def command(automation: str, as_json: bool, **options: Any) -> None:
        found = _call(_settings(options), lambda a: act(a, _id(automation)))
        if as_json:
            print_json(dataclasses.asdict(found))
            return
        table = Table(show_header=False, title=f"automation {found.id}")
        for key, value in dataclasses.asdict(found).items():
            text = when(value) if isinstance(value, datetime) else str(value)
            table.add_row(key.replace("_", " "), text)
        console.print(table)


_one("show", "Show one automation (by id or name).", lambda a, x: a.get(x))
_one("pause", "Stop polling an automation (its pending events are still processed).",
     lambda a, x: a.pause(x))  # fmt: skip
_one("resume", "Poll again from where the automation stopped.", lambda a, x: a.resume(x))


@automations.command()
@click.argument("automation")
@settings_options
def delete(automation: str, **options: Any) -> None:
    """Delete an automation and the keys of the events it saw."""
    _call(_settings(options), lambda a: a.delete(_id(automation)))
    click.echo(f"automation {automation} deleted")


@automations.command()
@click.argument("automation")
@click.option("--state", type=click.Choice([s.value for s in EventState]))
@click.option("--after", "after_id", type=int, default=0, help="Events after this id.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def events(
    automation: str, state: str | None, after_id: int, limit: int, as_json: bool, **options: Any
) -> None:
    """The events an automation saw, oldest first, with how far each got."""
    chosen = EventState(state) if state else None
    found = _call(_settings(options), lambda a: a.events(_id(automation), chosen, after_id, limit))
    _print_events(found, as_json)


def _print_events(found: list[AutomationEvent], as_json: bool) -> None:
    if as_json:
        print_json([dataclasses.asdict(e) for e in found])
        return
    table = Table("id", "automation", "key", "state", "step", "seen", "run", "error")
    for e in found:
        table.add_row(str(e.id), str(e.automation_id), e.key, e.state.value, str(e.step),
                      when(e.seen_at), str(e.run_id or ""), cut(e.error or ""))  # fmt: skip
    console.print(table)


@automations.command("run")
@click.argument("automation")
@click.option("--wait", is_flag=True, help="Wait for the event to be processed, showing how "
              "far a sync has got; exit 1 if it is dead-lettered.")  # fmt: skip
@settings_options
def run_now(automation: str, wait: bool, **options: Any) -> None:
    """Process an automation once now (a scheduled sync or report, out of schedule)."""
    settings = _settings(options)
    event = _call(settings, lambda a: a.run_now(_id(automation)))
    click.echo(f"event {event.id} ({event.key}) queued (run {event.run_id})")
    if not wait:
        return
    click.echo("waiting for a worker to process it (Ctrl-C stops waiting, not the run)")
    with bars() as progress:
        ended = _call(settings, lambda a: _processed(a, event, progress))
    if ended.state is EventState.DEAD_LETTER:
        click.echo(f"event {ended.id} dead-lettered: {ended.error}")
        sys.exit(1)
    click.echo(f"event {ended.id} done: {json.dumps(ended.outputs, default=str)[:2000]}")


async def _processed(
    automations: Automations, event: AutomationEvent, progress: Progress
) -> AutomationEvent:
    """`event` once processed (done or dead-lettered), telling `progress` the records a
    sync step has copied meanwhile."""
    while True:
        found = await automations.events(event.automation_id, None, event.id - 1, 1)
        current = found[0]
        if current.state in (EventState.DONE, EventState.DEAD_LETTER):
            return current
        for step, output in current.outputs.items():
            saved = output.get("checkpoint") if isinstance(output, dict) else None
            if isinstance(saved, dict) and "copied" in saved:
                progress(f"{step}: records copied", int(saved["copied"]), None)
        await asyncio.sleep(POLL_EVERY)


@automations.command()
@click.argument("event_id", type=int)
@settings_options
def replay(event_id: int, **options: Any) -> None:
    """Process an event again: a dead letter from its failed step, a done one from the start."""
    event = _call(_settings(options), lambda a: a.replay(event_id))
    click.echo(f"event {event.id} queued again from step {event.step} (run {event.run_id})")


@automations.group("dead-letter", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@settings_options
@click.pass_context
def dead_letter(ctx: click.Context, /, as_json: bool, **options: Any) -> None:
    """Events whose step failed for good, with their errors (`retry` replays them)."""
    if ctx.invoked_subcommand is None:
        found = _call(_settings(options), lambda a: a.events(None, EventState.DEAD_LETTER, 0, 1000))
        _print_events(found, as_json)


@dead_letter.command()
@click.argument("event_ids", type=int, nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every event in the dead-letter list.")
@settings_options
def retry(event_ids: tuple[int, ...], every: bool, **options: Any) -> None:
    """Replay dead-lettered events from the steps that failed."""
    if not event_ids and not every:
        raise click.UsageError("name the events to retry, or give --all")

    async def go(a: Automations) -> list[int]:
        chosen = list(event_ids) or [
            e.id for e in await a.events(None, EventState.DEAD_LETTER, 0, 10_000)
        ]
        return [(await a.replay(i)).id for i in chosen]

    retried = _call(_settings(options), go)
    click.echo(f"{counted(len(retried), 'event')} queued again")
