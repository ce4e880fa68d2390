"""What a value must be for both engines to store it and give it back unchanged.

- Text holds no NUL character (PostgreSQL's `text` and `jsonb` cannot hold one) and no
  lone surrogate (it has no UTF-8 form: neither engine can store it, no answer carry it).
- A JSON number is finite and an integer fits in 64 bits (NaN and infinities are not
  JSON; a longer integer does not survive every reader).

The HTTP edge refuses requests that break these (`web/edge.py`); the store refuses values
that break them with `UnstorableError`, before any statement runs, so a value that came
some other way fails its own write and nothing else.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cronlink.errors import UnstorableError

MAX_INT = 2**63 - 1
_FLAWED = re.compile("[\x00\ud800-\udfff]")


def flaw(text: str) -> str | None:
    """What makes `text` unstorable, or None."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii() and _FLAWED.search(text):
        return "a lone surrogate"
    return None


def escaped(text: str) -> str:
    """`text` with each unstorable character written as its escape (`\\u0000`), for an
    audit line or a message that must name the value without holding it."""
    return _FLAWED.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def json_flaw(value: Any, where: str = "") -> str | None:
    """What makes a JSON value (as `json.loads` gives it) unstorable, naming where in it
    (`.a[2]`), or None."""
    if isinstance(value, str):
        found = flaw(value)
        return None if found is None else f"{where or 'the value'} holds {found}"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return (
            None if -MAX_INT - 1 <= value <= MAX_INT else f"{where or 'a number'} is out of range"
        )
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where or 'a number'} is not finite"
    if isinstance(value, dict):
        for key, item in value.items():
            found = flaw(key) if isinstance(key, str) else None
            if found is not None:
                return f"a key of {where or 'the object'} holds {found}"
            problem = json_flaw(item, f"{where}.{escaped(str(key))[:40]}")
            if problem is not None:
                return problem
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = json_flaw(item, f"{where}[{index}]")
            if problem is not None:
                return problem
        return None
    return f"{where or 'the value'} is not JSON"


def check(text: str, where: str) -> str:
    """`text` if storable; else `UnstorableError` naming `where`."""
    found = flaw(text)
    if found is not None:
        raise UnstorableError(f"{where} holds {found}")
    return text


def to_json(value: Any) -> str:
    """The JSON text the store keeps for `value`; `UnstorableError` if it would not come
    back as it went in."""
    problem = json_flaw(value)
    if problem is not None:
        raise UnstorableError(f"cannot store JSON: {problem}")
    return json.dumps(value)
