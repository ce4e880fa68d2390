"""`cronlink tokens create|list|revoke`: the admin API's bearer tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from cronlink import control
from cronlink.cli.options import print_json, settings_from, settings_options, with_store
from cronlink.cli.show import console, when
from cronlink.durations import parse_duration
from cronlink.records.api_tokens import ApiToken, Scope

if TYPE_CHECKING:
    from datetime import timedelta

    from cronlink.config import Settings


@click.group()
def tokens() -> None:
    """API tokens for /api/v1: read < operate < admin, stored hashed, revocable."""


@tokens.command("create")
@click.option("--name", required=True, help="What the token is for (shown in lists).")
@click.option("--scope", type=click.Choice([s.label for s in Scope]), required=True,
              help="read: see; operate: also pause, trigger, cancel, refresh; "
                   "admin: also schedules, connections, the audit log.")  # fmt: skip
@click.option("--expires", default="90d", show_default=True,
              help="Lifetime (30d, 12h, …) or 'never'.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@settings_options
def create(name: str, scope: str, expires: str, as_json: bool, **options: Any) -> None:
    """Create a token and print it once: it is not stored, only its hash is."""
    lifetime = _lifetime(expires)
    made, secret = with_store(
        _settings(options),
        lambda s: control.create_token(s, name, Scope.named(scope), lifetime, datetime.now(UTC)),
    )
    if as_json:
        print_json(_token_dict(made) | {"token": secret})
        return
    click.echo(secret)
    expiry = "never expires" if made.expires_at is None else f"expires {when(made.expires_at)}"
    click.echo(f"token {made.id} ({made.scope.label}, {expiry}): shown only this once", err=True)


@tokens.command("list")
@click.option("--json", "as_json", is_flag=True)
@settings_options
def list_tokens(as_json: bool, **options: Any) -> None:
    """Every token (never the secret): scope, expiry, revocation, last use."""
    found = with_store(_settings(options), lambda s: s.tokens.list())
    if as_json:
        print_json([_token_dict(t) for t in found])
        return
    table = Table("id", "name", "scope", "created", "expires", "revoked", "last used")
    for t in found:
        table.add_row(str(t.id), t.name, t.scope.label, when(t.created_at),
                      when(t.expires_at) if t.expires_at else "never",
                      when(t.revoked_at) if t.revoked_at else "",
                      when(t.last_used_at) if t.last_used_at else "")  # fmt: skip
    console.print(table)


@tokens.command("revoke")
@click.argument("token_id", type=int)
@settings_options
def revoke(token_id: int, **options: Any) -> None:
    """Revoke a token: refused from the next call on."""
    done = with_store(_settings(options), lambda s: s.tokens.revoke(token_id, datetime.now(UTC)))
    click.echo(f"token {done.id} ({done.name}) revoked")


def _lifetime(text: str) -> timedelta | None:
    if text.strip().lower() == "never":
        return None
    try:
        lifetime = parse_duration(text)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--expires") from None
    if lifetime.total_seconds() <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="--expires")
    return lifetime


def _token_dict(token: ApiToken) -> dict[str, Any]:
    return {"id": token.id, "name": token.name, "scope": token.scope.label,
            "created_at": token.created_at, "expires_at": token.expires_at,
            "revoked_at": token.revoked_at, "last_used_at": token.last_used_at}  # fmt: skip


def _settings(options: dict[str, Any]) -> Settings:
    return settings_from(options["config_path"], options["database_url"], options["app_path"])
