"""The one scrubber: every text cronlink keeps or shows (run results and errors, step outputs
and errors, provider errors, log lines) loses the secrets it holds, in whatever form a
peer quoted them back.

A secret is found as it is and in every form a server or library may turn it into:

- URL-encoded, wholly or partly, `%7C` or `%7c`, a space as `%20` or `+` (and a `+` as a
  space, as a server that decoded a query quotes it);
- JSON-escaped (`\\"`, `\\/`, `\\u00e9`, a surrogate pair), mixed with the above;
- base64 (standard or URL-safe alphabet, padded or not), alone or inside a longer value
  such as `Basic base64(user:password)`: every run of base64 characters is decoded and
  masked whole when what it holds contains a secret in any of the forms above.

Every configured secret is masked whatever its length: a short one masks its characters
wherever they appear, which is why `CRON_SECRET` must be long (`cronlink.web.secrets`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cronlink.envtext import LISTED, listed

MASK = "***"

_URLSAFE = str.maketrans("-_", "+/")
_JSON_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
               "\r": "\\r", "\t": "\\t"}  # fmt: skip
_SPACES = {" ": ("+",), "+": (" ", "%20")}


class Scrubber:
    """Masks `secrets` (empty ones ignored) in text and in JSON-like values."""

    __slots__ = ("_compiled", "_runs", "_secrets")

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = frozenset(s for s in secrets if s)
        self._compiled: re.Pattern[str] | None = None
        # A run of base64 shorter than the shortest secret's encoding cannot hold one.
        shortest = min((len(s.encode()) for s in self._secrets), default=0)
        self._runs = _base64_runs(max(6, shortest * 4 // 3))

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        text = pattern.sub(MASK, text)
        return self._runs.sub(self._base64, text)

    @property
    def _pattern(self) -> re.Pattern[str] | None:
        # Compiled when first needed: most scrubbers (a refresh's) are never used.
        if self._compiled is None and self._secrets:
            # The longest first: a secret that contains another is masked whole.
            chosen = sorted(self._secrets, key=lambda s: (-len(s), s))
            self._compiled = re.compile("|".join(map(_pattern, chosen)))
        return self._compiled

    def value(self, value: Any) -> Any:
        """`value` with every string inside it (keys too) scrubbed: a step's output."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        return value

    def _base64(self, match: re.Match[str]) -> str:
        assert self._compiled is not None
        run = match[0].rstrip("=").translate(_URLSAFE)
        for offset in range(4):
            decoded = _decoded(run[offset:])
            if decoded and self._compiled.search(decoded):
                return MASK
        return match[0]


def configured(env: Mapping[str, str]) -> list[str]:
    """The secrets cronlink is given: each of `CRON_SECRET`, `CRON_SIGNING_KEY` and
    `CRONLINK_SECRET_KEY`, and the database URL's password."""
    found = [value for name in LISTED for value in listed(env, name)]
    password = urlsplit(env.get("DATABASE_URL", "")).password
    if password:
        found.append(password)
    return found


def without_password(url: str) -> str:
    """`url` with its password (if any) shown as `***`, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@functools.lru_cache(maxsize=64)
def _base64_runs(shortest: int) -> re.Pattern[str]:
    return re.compile(rf"[A-Za-z0-9+/_-]{{{shortest},}}={{0,2}}")


@functools.lru_cache(maxsize=1024)
def _pattern(secret: str) -> str:
    return "".join(_char(char) for char in secret)


def _char(char: str) -> str:
    """Every form one character of a secret may take in a quoted text."""
    forms = {re.escape(char), "".join(f"%{_hex(byte)}" for byte in char.encode())}
    forms.update(re.escape(form) for form in _SPACES.get(char, ()))
    code = ord(char)
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        forms.add(rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}")
    else:
        forms.add(rf"\\u{_hex(code, 4)}")
    if char in _JSON_SHORT:
        forms.add(re.escape(_JSON_SHORT[char]))
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def _hex(number: int, width: int = 2) -> str:
    """`number` in hexadecimal, either case matching."""
    digits = f"{number:0{width}X}"
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in digits)


def _decoded(run: str) -> str:
    """What a run of base64 characters holds (`""` when it holds nothing)."""
    run = run[: len(run) - 1] if len(run) % 4 == 1 else run
    try:
        return base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""
