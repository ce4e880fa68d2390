"""`cronlink serve` (the HTTP service) and `cronlink audit` (what it was asked to do)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from cronlink.cli.options import (
    print_json,
    run_async,
    settings_from,
    settings_options,
    with_store,
)
from cronlink.cli.show import console, cut, when
from cronlink.compose import compose
from cronlink.runtime import serve_http


@click.command()
@click.option("--host", envvar="CRONLINK_HOST", show_envvar=True,
              help="The address to listen on (default [serve] host, 127.0.0.1).")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), envvar="CRONLINK_PORT", show_envvar=True,
              help="The port (default [serve] port, 8080).")  # fmt: skip
@settings_options
def serve(host: str | None, port: int | None, **options: Any) -> None:
    """The HTTP service: POST /cron/{job} and /cron/tick behind CRON_SECRET, /healthz,
    /readyz."""
    settings, app = compose(
        settings_from(options["config_path"], options["database_url"], options["app_path"])
    )
    chosen_host = host or settings.serve.host
    chosen_port = settings.serve.port if port is None else port
    run_async(serve_http(settings, app, chosen_host, chosen_port))


@click.command()
@click.option("--actor", help="Only what this actor did (a token id, cron-secret, anonymous).")
@click.option("--action", help="Only this action (cron.run, cron.tick, …).")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]))
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def audit(
    actor: str | None, action: str | None, since: datetime | None, limit: int, as_json: bool,
    **options: Any,
) -> None:  # fmt: skip
    """The audit log, newest first: every cron call and admin action, refused ones too."""
    settings = settings_from(options["config_path"], options["database_url"], options["app_path"])

    entries = with_store(
        settings, lambda s: s.audit.find(actor=actor, action=action, since=since, limit=limit)
    )
    if as_json:
        print_json([dataclasses.asdict(e) for e in entries])
        return
    table = Table("id", "at", "actor", "action", "target", "client", "outcome", "detail")
    for e in entries:
        table.add_row(str(e.id), when(e.at), e.actor, e.action, e.target, e.client, e.outcome,
                      cut(e.detail, 60))  # fmt: skip
    console.print(table)
