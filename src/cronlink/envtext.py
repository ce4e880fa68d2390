"""Text that names environment variables (`${NAME}`, `${NAME:-default}`), and HTTP headers
read the same way everywhere: secrets stay in the environment, never in files."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from cronlink.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand(text: str, env: Mapping[str, str], used_by: str) -> str:
    """Replace each `${NAME}` from `env` (or its `:-default`); a missing one is named."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set (used by {used_by})")

    return VARIABLE.sub(value, text)


def referenced_values(texts: list[str], env: Mapping[str, str]) -> list[str]:
    """The values of the variables `texts` use (they may be secrets), longest first."""
    names = {m.group(1) for text in texts for m in VARIABLE.finditer(text)}
    return sorted((env[n] for n in names if env.get(n)), key=len, reverse=True)


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
