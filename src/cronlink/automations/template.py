"""`{name.path}` placeholders in trigger requests and steps, filled from plain values.

A placeholder that is the whole text keeps its value's type (a number stays a number in a
JSON body); inside a longer text it is formatted. A name that is not there is an error
naming the placeholder and where it was written, never an empty string sent to an API.
"""

from __future__ import annotations

import re
from typing import Any

from cronlink.errors import ConfigError

_ABSENT = object()
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\}")


def dig(value: Any, path: str, where: str) -> Any:
    """`a.b.0.c` inside nested dicts and lists; `ConfigError` naming `where` if absent."""
    found = find(value, path, _ABSENT)
    if found is _ABSENT:
        raise ConfigError(f"{where}: nothing at {path!r}")
    return found


def find(value: Any, path: str, default: Any = None) -> Any:
    """What `dig` finds, or `default`. At each level the longest run of parts that names a
    key is taken, so a field whose name holds dots (Graph's `@odata.nextLink`) is reached
    by its whole name, and `a.@odata.nextLink` reaches it inside `a`."""
    parts = path.split(".") if path else []
    at = 0
    while at < len(parts):
        if isinstance(value, dict):
            for end in range(len(parts), at, -1):
                name = ".".join(parts[at:end])
                if name in value:
                    value, at = value[name], end
                    break
            else:
                return default
        elif isinstance(value, list) and parts[at].isdigit() and int(parts[at]) < len(value):
            value, at = value[int(parts[at])], at + 1
        else:
            return default
    return value


def render(template: Any, values: dict[str, Any], where: str) -> Any:
    """Fill the placeholders of a string, or of every string inside lists and dicts."""
    if isinstance(template, dict):
        return {k: render(v, values, f"{where}.{k}") for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, values, f"{where}[{i}]") for i, v in enumerate(template)]
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return dig(values, whole.group(1), f"{where}: {{{whole.group(1)}}}")

    def fill(match: re.Match[str]) -> str:
        value = dig(values, match.group(1), f"{where}: {{{match.group(1)}}}")
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(fill, template)
