"""Commands about cron expressions themselves: next, explain."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from cronlink.cli.options import parse_instant, print_json
from cronlink.cron import check_fires, next_fire, parse
from cronlink.cron import explain as explain_text
from cronlink.jobs import time_zone


def _zone(name: str) -> ZoneInfo:
    try:
        return time_zone(name)
    except ValueError:
        raise click.BadParameter(f"unknown time zone {name!r}", param_hint="--tz") from None


@click.command("next")
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the schedule.")
@click.option("--from", "start", help="Start instant, ISO 8601 (default now); naive means --tz.")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of ISO 8601 instants.")
def next_(expression: str, tz: str, start: str | None, count: int, as_json: bool) -> None:
    """The next fire times of EXPRESSION, strictly after the start."""
    zone = _zone(tz)
    expr = parse(expression)
    at = datetime.now(UTC) if start is None else parse_instant(start, "--from", zone)
    check_fires(expr, zone, at)
    found: list[datetime] = []
    while len(found) < count and (following := next_fire(expr, at, zone)) is not None:
        found.append(following)
        at = following
    if as_json:
        print_json([f.isoformat() for f in found])
        return
    for fire in found:
        click.echo(fire.isoformat())


@click.command()
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the schedule.")
def explain(expression: str, tz: str) -> None:
    """EXPRESSION in plain English (refused when it never fires in the zone)."""
    zone = _zone(tz)
    sentence = explain_text(expression)
    check_fires(parse(expression), zone, datetime.now(UTC))
    click.echo(sentence if zone.key == "UTC" else f"{sentence} ({zone.key})")
