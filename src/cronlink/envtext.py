"""Text that names environment variables (`${NAME}`, `${NAME:-default}`), and HTTP headers
read the same way everywhere: secrets stay in the environment, never in files.

`CRON_SECRET`, `CRON_SIGNING_KEY` and `CRONLINK_SECRET_KEY` each hold a comma-separated
list, the current value first and the ones still accepted while a rotation is under way
after it: `${CRON_SECRET}` is the current one alone. `${CRON_SIGNING_KEY}` is refused: the
signing key is never sent (`sign = true` signs a call with it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
LISTED = ("CRON_SECRET", "CRON_SIGNING_KEY", "CRONLINK_SECRET_KEY")
NEVER_SENT = frozenset({"CRON_SIGNING_KEY"})


def listed(env: Mapping[str, str], name: str, min_length: int = 0) -> list[str]:
    """The values of a list variable, current first (blanks around commas ignored), each
    at least `min_length` characters long (`ConfigError` naming the variable)."""
    values = [part.strip() for part in env.get(name, "").split(",") if part.strip()]
    for index, value in enumerate(values, 1):
        if len(value) < min_length:
            raise ConfigError(
                f"{name}: value #{index} is shorter than {min_length} characters "
                "(make one with `openssl rand -hex 32`)"
            )
    return values


def current(env: Mapping[str, str], name: str) -> str:
    """The current (first) value of a list variable; "" when unset."""
    values = listed(env, name)
    return values[0] if values else ""


def expand(text: str, env: Mapping[str, str], used_by: str) -> str:
    """Replace each `${NAME}` from `env` (or its `:-default`); a missing one is named."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in NEVER_SENT:
            raise ConfigError(
                f"{used_by} names ${{{name}}}: the signing key is never sent; "
                "set sign = true to sign the call with it"
            )
        if name in LISTED and current(env, name):
            return current(env, name)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (used by {used_by})")

    return VARIABLE.sub(value, text)


def referenced_values(texts: list[str], env: Mapping[str, str]) -> list[str]:
    """The values of the variables `texts` use (they may be secrets; every one of a list)."""
    names = {m.group(1) for text in texts for m in VARIABLE.finditer(text)}
    return [value for n in names for value in (listed(env, n) if n in LISTED else [env.get(n)])
            if value]  # fmt: skip


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """`Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3), capped at a day."""
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=min(int(value.strip()), 86_400))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(timedelta(days=1), max(timedelta(0), when - (now or datetime.now(UTC))))
