"""`cronlink connections …` and `cronlink keys …`: connections and the key that seals them.

Tokens are read from a JSON file or stdin (`--tokens FILE|-`), so that they need not sit in
the shell history or the process list; the flags exist for scripts that have no other way.
Nothing here ever prints a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink.cli.options import print_json, run_async, settings_from, settings_options
from cronlink.cli.progress import bars
from cronlink.cli.show import console, when
from cronlink.compose import build_app
from cronlink.connections.crypto import generate_key
from cronlink.plurals import counted
from cronlink.records.connections import ConnectionState
from cronlink.sandbox import Sandbox
from cronlink.sandbox.grants import CLIENT_ID
from cronlink.services import connections_for, providers_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from cronlink.config import Settings
    from cronlink.connections.service import Connections
    from cronlink.records.connections import Connection


def _call(
    settings: Settings, fn: Callable[[Connections], Awaitable[Any]], *, check_keys: bool = True
) -> Any:
    async def go() -> Any:
        app = build_app(settings)
        async with connections_for(settings, app, check_keys=check_keys) as connections:
            return await fn(connections)

    return run_async(go())


def connection_dict(connection: Connection) -> dict[str, Any]:
    return dataclasses.asdict(connection)


def _print(connection: Connection, as_json: bool) -> None:
    if as_json:
        print_json(connection_dict(connection))
        return
    table = Table(show_header=False, title=f"connection {connection.id}")
    for key, value in connection_dict(connection).items():
        text = when(value) if isinstance(value, datetime) else str(value)
        table.add_row(key.replace("_", " "), text)
    console.print(table)


@click.group()
def connections() -> None:
    """Connections to providers: add, list, show, rename, refresh, check, disable, delete."""


@connections.command()
@click.option("--provider", required=True, help="A provider name (see `connections providers`).")
@click.option("--owner", required=True, help="Who the connection belongs to (your user id).")
@click.option(
    "--tokens",
    "tokens_file",
    help="JSON with access_token, refresh_token, expires_in (a file, or - for stdin).",
)
@click.option("--access-token", help="Prefer --tokens: flags show up in the process list.")
@click.option("--refresh-token")
@click.option("--expires-in", type=click.FloatRange(min=1), help="Seconds the access token lasts.")
@click.option("--scopes", help="Granted scopes, space-separated (default: the provider's).")
@click.option(
    "--name",
    help="The owner's name for it (crm-main), which automation steps can use; unique per owner.",
)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def add(
    provider: str, owner: str, tokens_file: str | None, access_token: str | None,
    refresh_token: str | None, expires_in: float | None, scopes: str | None, name: str | None,
    as_json: bool, config_path: Path | None, database_url: str | None, app_path: str | None,
) -> None:  # fmt: skip
    """Store a connection; its tokens are encrypted with CRONLINK_SECRET_KEY."""
    given = _read_tokens(tokens_file) if tokens_file else {}
    access = access_token or given.get("access_token")
    if not isinstance(access, str) or not access:
        raise click.UsageError("give the access token with --tokens FILE|- or --access-token")
    refresh = refresh_token or given.get("refresh_token")
    if refresh is not None and not isinstance(refresh, str):
        raise click.UsageError("--tokens: refresh_token must be a string")
    lifetime = expires_in if expires_in is not None else given.get("expires_in")
    numeric = isinstance(lifetime, int | float) and not isinstance(lifetime, bool)
    if lifetime is not None and not numeric:
        raise click.UsageError("--tokens: expires_in must be a number of seconds")
    settings = settings_from(config_path, database_url, app_path)
    added = _call(
        settings,
        lambda c: c.add(
            provider=provider, owner=owner, access_token=access,
            refresh_token=refresh,
            expires_in=lifetime, scopes=scopes, name=name,
        ),
    )  # fmt: skip
    if as_json:
        print_json(connection_dict(added))
    else:
        named = f", named {added.name}" if added.name else ""
        click.echo(f"connection {added.id} added ({added.provider}, owner {added.owner}{named})")


def _read_tokens(source: str) -> dict[str, Any]:
    where = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as error:
        raise click.BadParameter(
            f"cannot read {where}: {error.strerror}", param_hint="--tokens"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(
            f"{where} is not JSON ({error.msg} at line {error.lineno})", param_hint="--tokens"
        ) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{where} must hold a JSON object", param_hint="--tokens")
    return data


@connections.command("list")
@click.option("--owner")
@click.option("--provider")
@click.option("--state", type=click.Choice([s.value for s in ConnectionState]))
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def list_(
    owner: str | None, provider: str | None, state: str | None, limit: int, as_json: bool,
    config_path: Path | None, database_url: str | None, app_path: str | None,
) -> None:  # fmt: skip
    """Connections, oldest first (never a secret)."""
    settings = settings_from(config_path, database_url, app_path)
    chosen = ConnectionState(state) if state else None
    found: list[Connection] = _call(
        settings, lambda c: c.find(owner=owner, provider=provider, state=chosen, limit=limit)
    )
    if as_json:
        print_json([connection_dict(x) for x in found])
        return
    table = Table("id", "name", "provider", "owner", "state", "health", "expires", "last error")
    for x in found:
        table.add_row(str(x.id), x.name or "", x.provider, x.owner, x.state.value,
                      x.health.value, when(x.expires_at), x.last_error or "")  # fmt: skip
    console.print(table)


def _one(name: str, doc: str, act: Callable[[Connections, int], Awaitable[Any]]) -> None:
    @connections.command(name, help=doc)
    @click.argument("connection_id", type=int)
    @click.option("--json", "as_json", is_flag=True)
    @settings_options
    def command(
        connection_id: int, as_json: bool, config_path: Path | None, database_url: str | None,
        app_path: str | None,
    ) -> None:  # fmt: skip
        settings = settings_from(config_path, database_url, app_path)

        async def go(c: Connections) -> Connection | None:
            await act(c, connection_id)
            return None if name == "delete" else await c.get(connection_id)

        # Deleting reads no secret: it works when the key that sealed them is lost.
        after = _call(settings, go, check_keys=name != "delete")
        if after is None:
            click.echo(f"connection {connection_id} deleted")
        else:
            _print(after, as_json)


_one("show", "Show one connection (never a secret).", lambda c, i: c.get(i))
_one("check", "Probe a connection's health now.", lambda c, i: c.check(i))
_one("disable", "Stop refreshing, checking and using a connection.", lambda c, i: c.disable(i))
_one("enable", "Use a disabled connection again.", lambda c, i: c.enable(i))
_one("delete", "Delete a connection and its credentials.", lambda c, i: c.delete(i))


@connections.command()
@click.argument("connection_id", type=int, required=False)
@click.option("--all", "every", is_flag=True, help="Every active connection, a few at a time.")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def refresh(
    connection_id: int | None, every: bool, as_json: bool, config_path: Path | None,
    database_url: str | None, app_path: str | None,
) -> None:  # fmt: skip
    """Refresh a connection's tokens now (or every active one's, with --all)."""
    if (connection_id is not None) == every:
        raise click.UsageError("name one connection, or give --all")
    settings = settings_from(config_path, database_url, app_path)
    if connection_id is not None:
        _print(_call(settings, lambda c: c.refresh(connection_id)), as_json)
        return
    with bars() as progress:
        outcomes: dict[int, str | None] = _call(settings, lambda c: c.refresh_all(progress))
    if as_json:
        print_json([{"id": i, "refreshed": e is None, "error": e} for i, e in outcomes.items()])
        return
    failed = {i: e for i, e in outcomes.items() if e is not None}
    click.echo(
        f"refreshed {len(outcomes) - len(failed)} of {counted(len(outcomes), 'active connection')}"
    )
    for failed_id, error in failed.items():
        click.echo(f"  connection {failed_id}: {error}")
    if failed:
        sys.exit(1)


@connections.command()
@click.argument("connection_id", type=int)
@click.argument("name", required=False)
@click.option("--remove", is_flag=True, help="Take the connection's name away instead.")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def rename(
    connection_id: int, name: str | None, remove: bool, as_json: bool,
    config_path: Path | None, database_url: str | None, app_path: str | None,
) -> None:  # fmt: skip
    """Name a connection (unique among its owner's), or rename it: automation steps that
    named it by its old name no longer find it."""
    if (name is None) != remove:
        raise click.UsageError("give a NAME, or --remove to take the name away")
    settings = settings_from(config_path, database_url, app_path)
    renamed = _call(settings, lambda c: c.rename(connection_id, name))
    if as_json:
        print_json(connection_dict(renamed))
    elif renamed.name is None:
        click.echo(f"connection {connection_id} has no name now")
    else:
        click.echo(f"connection {connection_id} is named {renamed.name}")


@connections.command()
@click.argument("connection_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
@settings_options
def events(
    connection_id: int | None, as_json: bool, config_path: Path | None,
    database_url: str | None, app_path: str | None,
) -> None:  # fmt: skip
    """What happened to a connection (or to all): refreshes, failures, state changes."""
    settings = settings_from(config_path, database_url, app_path)
    found = _call(settings, lambda c: c.events(connection_id))
    if as_json:
        print_json([dataclasses.asdict(e) for e in found])
        return
    for e in found:
        click.echo(f"{when(e.at)} connection {e.connection_id} {e.kind}: {e.detail}")


@connections.command()
@settings_options
def providers(config_path: Path | None, database_url: str | None, app_path: str | None) -> None:
    """The providers connections can use, shipped and your own."""
    settings = settings_from(config_path, database_url, app_path)
    table = Table("name", "provider", "token URL", "rotates", "margin", "source")
    for p in providers_for(settings):
        table.add_row(p.name, p.display_name, p.token_url, "yes" if p.rotates_refresh_tokens
                      else "no", str(p.refresh_margin), str(p.source))  # fmt: skip
    console.print(table)


@click.group()
def keys() -> None:
    """The key that encrypts credentials (CRONLINK_SECRET_KEY)."""


@keys.command()
def generate() -> None:
    """Print a new key. To rotate: put it first in CRONLINK_SECRET_KEY (new,old), run
    `cronlink keys rotate`, then drop the old one."""
    click.echo(generate_key())


@keys.command()
@settings_options
def rotate(config_path: Path | None, database_url: str | None, app_path: str | None) -> None:
    """Re-encrypt every stored credential with the first key of CRONLINK_SECRET_KEY."""
    settings = settings_from(config_path, database_url, app_path)
    count = _call(settings, lambda c: c.rotate_keys())
    click.echo(f"re-encrypted {counted(count, 'connection')} with the first key; older keys can go")


@keys.command("forget-lost")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def forget_lost(
    yes: bool, config_path: Path | None, database_url: str | None, app_path: str | None
) -> None:
    """Give up the credentials sealed with a key that CRONLINK_SECRET_KEY no longer holds.

    For when that key is lost for good: each such connection goes to needs_reauth (its
    owner connects again), and cronlink starts again. Connections sealed with a key you
    still hold are not touched."""
    settings = settings_from(config_path, database_url, app_path)
    if not yes:
        click.confirm(
            "Forget every credential no key in CRONLINK_SECRET_KEY opens? Their connections "
            "will need their owners to connect again",
            abort=True,
        )
    forgotten: dict[str, list[int]] = _call(
        settings, lambda c: c.forget_lost_keys(), check_keys=False
    )
    if not forgotten:
        click.echo("every stored credential opens with CRONLINK_SECRET_KEY: nothing forgotten")
    for key, ids in sorted(forgotten.items()):
        click.echo(
            f"forgot the credentials of {counted(len(ids), 'connection')} sealed with lost key "
            f"id {key} ({', '.join(map(str, ids))}): each needs its owner to connect again"
        )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
def sandbox(host: str, port: int) -> None:
    """Run the sandbox provider: a local OAuth2 server for trying connections out."""

    async def serve() -> None:
        async with Sandbox(host, port) as running:
            click.echo(f"sandbox provider at {running.url} (client {CLIENT_ID}); Ctrl-C stops")
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve())
