"""The `cronlink` command line: parse flags, build settings, call the core.

Exit codes: 0 ok, 1 the thing asked failed, 2 usage or input error.

Each command's module is imported when the command is used (`--help` imports them all):
a role loads only what it runs, not every other command's libraries.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from cronlink.errors import ConfigError, CronlinkError, CronSyntaxError
from cronlink.observe import logs

INPUT_ERRORS = (ConfigError, CronSyntaxError)

COMMANDS = {
    "init": "role_cmds:init",
    "run": "role_cmds:run",
    "demo": "role_cmds:demo",
    "scheduler": "role_cmds:scheduler",
    "worker": "role_cmds:worker",
    "db": "role_cmds:db",
    "jobs": "job_cmds:jobs",
    "trigger": "job_cmds:trigger",
    "pause": "job_cmds:pause",
    "resume": "job_cmds:resume",
    "runs": "job_cmds:runs",
    "test-scheduled": "job_cmds:test_scheduled",
    "next": "inspect_cmds:next_",
    "explain": "inspect_cmds:explain",
    "connections": "connection_cmds:connections",
    "keys": "connection_cmds:keys",
    "sandbox": "connection_cmds:sandbox",
    "automations": "automation_cmds:automations",
    "serve": "serve_cmds:serve",
    "audit": "serve_cmds:audit",
    "tokens": "token_cmds:tokens",
    "alerts": "alert_cmds:alerts",
    "usage": "usage_cmds:usage",
    "advise": "usage_cmds:advise",
    "import": "interop_cmds:import_command",
    "export": "interop_cmds:export_command",
}
"""Every command, as `module:attribute` in `cronlink.cli`."""


class _Cronlink(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(f"cronlink.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

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


def main() -> None:
    cli()
