"""Connection names: an owner's handle on a connection (`crm-main`), unique among that
owner's connections, which an automation's steps use to say which connection a request
goes through. A step may give an id instead; both are found among the automation owner's
connections only (`Connections.resolve`)."""

from __future__ import annotations

import re

from cronlink.errors import ConfigError, ConnectionNotFoundError, ConnectionUnusableError
from cronlink.records.connections import Connection, ConnectionState

MAX_NAME = 64
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
RULE = f"1-{MAX_NAME} letters, digits, '.', '_' or '-', starting with a letter"

Ref = int | str
"""A connection as a step names it: its id, or its name."""


def problem(name: str) -> str | None:
    """What is wrong with `name` as a connection name, None if nothing (a name starts
    with a letter, so it is never mistaken for an id)."""
    if isinstance(name, str) and _NAME.fullmatch(name):
        return None
    quoted = repr(name) if len(str(name)) <= 80 else repr(str(name)[:80]) + "…"
    return f"{quoted} is not a connection name: give {RULE}"


def check_name(name: str) -> str:
    """`name` if it is a valid connection name, else `ConfigError` naming it."""
    wrong = problem(name)
    if wrong is not None:
        raise ConfigError(f"name: {wrong}")
    return name


def shown(ref: Ref) -> str:
    """How an error names the connection a step asked for."""
    return f"connection {ref}" if isinstance(ref, int) else repr(ref)


def foreign(ref: Ref, owner: str) -> ConnectionNotFoundError:
    return ConnectionNotFoundError(f"{shown(ref)} is not a connection of {owner}")


def check_usable(ref: Ref, connection: Connection) -> None:
    """Refuse a connection a step may not use now, saying why."""
    if connection.state is ConnectionState.DISABLED:
        raise ConnectionUnusableError(f"{shown(ref)} is disabled")
    if connection.state is ConnectionState.NEEDS_REAUTH:
        why = f" ({connection.last_error})" if connection.last_error else ""
        raise ConnectionUnusableError(f"{shown(ref)} needs reauth{why}")
    if connection.state is not ConnectionState.ACTIVE:
        raise ConnectionUnusableError(f"{shown(ref)} is {connection.state.value}")
