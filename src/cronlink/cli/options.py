"""Flags shared by the commands, each showing its environment variable in --help."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cronlink.config import CONFIG_FILE, Settings, load_settings
from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from cronlink.store import Store

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def settings_options(command: F) -> F:
    """`--config`, `--database-url` and `--app`, turned into one `settings` argument."""
    command = click.option(
        "--app",
        "app_path",
        envvar="CRONLINK_APP",
        show_envvar=True,
        help="Python jobs to load, as package.module:app.",
    )(command)
    command = click.option(
        "--database-url",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="Database URL (default sqlite:///cronlink.db).",
    )(command)
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="CRONLINK_CONFIG",
        show_envvar=True,
        help="Configuration file (default ./cronlink.toml when present).",
    )(command)


def settings_from(
    config_path: Path | None, database_url: str | None, app_path: str | None
) -> Settings:
    """The settings a command runs with; `ConfigError` when nothing says what to run or
    where: a command would create an empty `cronlink.db` here and show nothing."""
    named = config_path is not None or database_url is not None or app_path is not None
    if not named and not Path(CONFIG_FILE).exists():
        raise ConfigError(
            f"no configuration found: no {CONFIG_FILE} in {Path.cwd()}, and no --config, "
            "--database-url or --app (nor CRONLINK_CONFIG, DATABASE_URL or CRONLINK_APP). "
            f"`cronlink init` writes a starter {CONFIG_FILE}; `cronlink demo` runs a demo"
        )
    return load_settings(config_path, database_url, app_path)


def run_async(coroutine: Coroutine[Any, Any, T], *, libuv: bool = False) -> T:
    """The one place the command line enters asyncio; with `libuv`, on uvloop's event loop
    where uvloop exists (not on Windows)."""
    if libuv and _has_uvloop():
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def with_store(settings: Settings, verb: Callable[[Store], Awaitable[T]]) -> T:
    """`verb` over the settings' store, opened (and migrated) for it and closed after."""
    # Imported here: the roles' runtime is more than most commands need.
    from cronlink.runtime import open_store

    async def go() -> T:
        store = await open_store(settings)
        try:
            return await verb(store)
        finally:
            await store.close()

    return run_async(go())


def parse_instant(text: str, flag: str, zone: tzinfo = UTC) -> datetime:
    """An ISO 8601 instant from a flag; without an offset it is read in `zone`."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 instant", param_hint=flag) from None
    return value if value.tzinfo else value.replace(tzinfo=zone)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=_plain))


def _plain(value: Any) -> Any:
    """Instants as ISO 8601 with their offset; enums and the rest as text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)
