"""The `cronlink` command line: parse flags, build settings, call the core.

Exit codes: 0 ok, 1 the thing asked failed, 2 usage or input error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from cronlink.cli import (
    alert_cmds,
    automation_cmds,
    connection_cmds,
    inspect_cmds,
    interop_cmds,
    job_cmds,
    role_cmds,
    serve_cmds,
    token_cmds,
    usage_cmds,
)
from cronlink.errors import ConfigError, CronlinkError, CronSyntaxError
from cronlink.observe import logs

INPUT_ERRORS = (ConfigError, CronSyntaxError)


class _Cronlink(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CronlinkError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2 if isinstance(error, INPUT_ERRORS) else 1)


@click.group(cls=_Cronlink)
@click.option("-v", "--verbose", is_flag=True, help="Log debug lines.")
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default="auto",
              envvar=logs.STYLE_ENV, show_envvar=True, show_default=True,
              help="Log lines as JSON objects or text; auto: text on a terminal.")  # fmt: skip
@click.version_option(package_name="cronlink")
def cli(verbose: bool, log_format: logs.Style) -> None:
    """cronlink: cron that fires exactly once, light and heavy tiers, SQLite or PostgreSQL."""
    logs.configure(verbose, log_format)


for module in (
    role_cmds,
    job_cmds,
    inspect_cmds,
    connection_cmds,
    automation_cmds,
    serve_cmds,
    token_cmds,
    alert_cmds,
    usage_cmds,
    interop_cmds,
):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    cli()
